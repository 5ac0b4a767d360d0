"""The generated files, and writing or checking them: one list, so a page cannot be written but never checked."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and Python-Markdown's toc both make it for the headings these docs link to:
    code marks and punctuation dropped, lower case, runs of spaces and hyphens made one hyphen."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown page's ATX headings (fenced code skipped)."""
    found, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^#{1,6} (.+?)\s*$", line)):
            found.add(slug(match.group(1)))
    return found


_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def broken_links(page: Path) -> list[str]:
    """The relative links of a Markdown page (README.md) whose file or heading anchor does not exist, read as
    GitHub resolves them: paths relative to the page, anchors from the target's headings."""
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with that anchor")
    return broken


@dataclass(frozen=True)
class Generated:
    path: str  # relative to the project root
    render: Callable[[], str]
    what: str


def _config() -> str:
    from tools.docs import config_reference

    return config_reference.render()


def _cli() -> str:
    from tools.docs import cli_reference

    return cli_reference.render()


def _alarms() -> str:
    from tools.docs import alarm_list

    return alarm_list.render(alarm_list.synthesise())


def _chart() -> str:
    from tools.docs import cost_chart

    return cost_chart.render()


GENERATED = (
    Generated("docs/reference/configuration.md", _config, "configuration reference (the config model)"),
    Generated("docs/reference/cli.md", _cli, "command-line reference (every command's parser)"),
    Generated("docs/reference/alarms.md", _alarms, "alarm list (synthesised templates, one per mode)"),
    Generated("docs/assets/cost-per-1000-photos.svg", _chart, "cost chart (the cost model)"),
)


def stale(generated: Generated, root: Path = PROJECT_ROOT) -> bool:
    path = root / generated.path
    return not path.is_file() or path.read_text(encoding="utf-8") != generated.render()


def run(chosen: Iterable[Generated], *, check: bool, out: TextIO, root: Path = PROJECT_ROOT) -> int:
    """Write (or, with `check`, compare) each file, one line of progress each; 1 when `check` finds one stale."""
    outdated = []
    for generated in chosen:
        out.write(f"{generated.path}: {generated.what} ... ")
        out.flush()
        text = generated.render()
        path = root / generated.path
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            out.write("up to date\n")
        elif check:
            outdated.append(generated.path)
            out.write("STALE\n")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            out.write("written\n")
    if outdated:
        out.write(f"{len(outdated)} generated file(s) stale: run `python -m tools.docs` and commit them\n")
        return 1
    return 0
