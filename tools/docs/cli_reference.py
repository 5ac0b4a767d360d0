"""docs/reference/cli.md from each command's own argparse parser: usage, every option, its default and help.

Most commands build their parser inside `main()`, so the parser is caught where it is used: `main(argv)` runs
with `ArgumentParser.parse_known_args` replaced by a function that raises with the parser in hand, before the
command does anything. No command needs restructuring for its page, and a new option appears on the next
regeneration. Defaults that read the environment are rendered without it (AWS_* variables removed), and paths
inside the project are shown relative to it, so the page is the same on every machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

PAGE = "docs/reference/cli.md"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_WIDTH = 110
# Folders whose runnable modules (`if __name__ == "__main__"`) are commands a user runs; benchmarks are scripts
# that print figures, documented where their figures are.
COMMAND_PACKAGES = ("tools", "training_job", "labelling_job", "scripts", "review_api", "model_code")


class _Caught(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def _raise_with(parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> Any:
    raise _Caught(parser)


@contextlib.contextmanager
def _without_aws_environment() -> Iterator[None]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    with mock.patch.dict(os.environ, clean, clear=True):
        yield


@contextlib.contextmanager
def _importable(folder: str | None) -> Iterator[None]:
    """`folder` (of the project) first on the import path, as the command's own bundle has it."""
    if folder is None:
        yield
        return
    path = str(PROJECT_ROOT / folder)
    sys.path.insert(0, path)
    try:
        yield
    finally:
        sys.path.remove(path)


def parser_of_main(
    module: str, *argv: str, import_root: str | None = None
) -> Callable[[], argparse.ArgumentParser]:
    """The parser `module.main([*argv])` builds, caught before it parses; `import_root`: a project folder the
    command's bundle puts at the import root (the labelling job's lambda/ modules)."""

    def load() -> argparse.ArgumentParser:
        with _importable(import_root):
            main = importlib.import_module(module).main
        with (
            _without_aws_environment(),
            mock.patch.object(argparse.ArgumentParser, "parse_known_args", _raise_with),
        ):
            try:
                main(list(argv))
            except _Caught as caught:
                return caught.parser
        raise RuntimeError(f"{module}.main({list(argv)}) returned without parsing its arguments")

    return load


def _train_parser() -> argparse.ArgumentParser:
    # TRL's parser takes every SFTConfig and ModelConfig field too (hundreds, TRL's documentation lists them);
    # the page shows the script's own arguments.
    import dataclasses

    from training_job.train import PhotoScriptArguments, make_parser

    parser = make_parser()
    parser.prog = "python -m training_job.train"  # TrlParser names itself after sys.argv[0]
    own = {f.name for f in dataclasses.fields(PhotoScriptArguments)}
    parser._actions = [a for a in parser._actions if a.dest in own or a.dest == "help"]
    return parser


@dataclass(frozen=True)
class Command:
    module: str  # the runnable module, for the completeness check
    load: Callable[[], argparse.ArgumentParser]
    note: str = ""


COMMANDS = (
    Command("scripts.demo", parser_of_main("scripts.demo")),
    Command("tools.cost_estimate", parser_of_main("tools.cost.cli")),
    Command("tools.cost_estimate", parser_of_main("tools.cost.cli", "traffic")),
    Command("tools.cost_estimate", parser_of_main("tools.cost.cli", "volumes")),
    Command("tools.cost_estimate", parser_of_main("tools.cost.cli", "scheduled")),
    Command("tools.cost_estimate", parser_of_main("tools.cost.cli", "sizing")),
    Command("tools.backfill", parser_of_main("tools.backfill")),
    Command("tools.redrive", parser_of_main("tools.redrive")),
    Command("tools.smoke_test", parser_of_main("tools.smoke_test")),
    Command("tools.review_export", parser_of_main("tools.review_export")),
    Command("tools.review_report", parser_of_main("tools.review_report")),
    Command("tools.docs", parser_of_main("tools.docs.__main__")),
    Command("tools.stage_base_model", parser_of_main("tools.stage_base_model")),
    Command("training_job.build_dataset", parser_of_main("training_job.build_dataset")),
    Command("training_job.preflight", parser_of_main("training_job.preflight")),
    Command(
        "training_job.train",
        _train_parser,
        "Also every field of TRL's `SFTConfig` and `ModelConfig` (`--num_train_epochs 3`, `--learning_rate`, ...);"
        " the defaults are `training_job/configs/sft_llava_next.yaml`'s. It runs under `accelerate launch`"
        " ([training](../training.md#2-fine-tune)).",
    ),
    Command("training_job.launch", parser_of_main("training_job.launch", "--help")),
    Command("training_job.evaluate", parser_of_main("training_job.evaluate")),
    Command("training_job.tiny_model", parser_of_main("training_job.tiny_model")),
    Command("labelling_job.run", parser_of_main("labelling_job.run", import_root="lambda")),
    Command("model_code.vllm_server", parser_of_main("model_code.vllm_server")),
    Command("review_api.local", parser_of_main("review_api.local")),
    Command("tools.async_worker", parser_of_main("tools.async_worker")),
)


_RUNS_AS_PROGRAM = re.compile(r"^if __name__ == .__main__.:", re.MULTILINE)
# One command, three runnable names: the package, its CLI module and the short alias the docs use.
ALIASES = {"tools.cost": "tools.cost_estimate", "tools.cost.cli": "tools.cost_estimate"}


def runnable_modules() -> set[str]:
    """Every module of the command packages that runs as a program (a `__main__` guard or a package's
    `__main__.py`), by the name a user types after `python -m`."""
    found = set()
    for package in COMMAND_PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            if path.name == "__main__.py" or _RUNS_AS_PROGRAM.search(path.read_text(encoding="utf-8")):
                module = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__main__")
                found.add(ALIASES.get(module, module))
    return found


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(parser.prog, width=_WIDTH)


def _default(action: argparse.Action) -> str:
    value = action.default
    if value is None or value is argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
        return ""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return ""
    if isinstance(value, Path) and value.is_absolute() and PROJECT_ROOT in value.parents:
        value = value.relative_to(PROJECT_ROOT)
    if isinstance(value, (list, tuple)):
        return "`" + " ".join(str(v) for v in value) + "`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    formatter = _formatter(parser)
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help is argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = formatter._format_args(action, action.dest.upper()) if action.nargs != 0 else ""
            name = ", ".join(f"`{flag}{' ' + metavar if metavar else ''}`" for flag in action.option_strings)
        else:
            name = f"`{formatter._metavar_formatter(action, action.dest)(1)[0]}`"
        help_text = formatter._expand_help(action) if action.help else ""
        if action.choices is not None and not isinstance(action.choices, dict) and "{" not in name:
            help_text += f" (one of: {', '.join(str(c) for c in action.choices)})"
        if action.required:
            help_text = "**required.** " + help_text
        rows.append(f"| {name} | {_default(action)} | {_cell(help_text)} |")
    return rows


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(action.choices.items())
    return found


def render_parser(parser: argparse.ArgumentParser, level: int = 2, note: str = "") -> list[str]:
    # The options table says what `--help`'s usage block says; the page stays one screen a command.
    lines = [f"{'#' * level} `{parser.prog}`", ""]
    if parser.description:
        lines += [" ".join(parser.description.split()), ""]
    rows = _options(parser)
    if rows:
        lines += ["| argument | default | meaning |", "|---|---|---|", *rows, ""]
    if note:
        lines += [note, ""]
    if parser.epilog:
        lines += [" ".join(parser.epilog.split()), ""]
    for _name, sub in _subcommands(parser):
        lines += render_parser(sub, level + 1)
    return lines


def render() -> str:
    lines = [
        "# Command-line reference",
        "",
        "<!-- Generated by `python -m tools.docs` from each command's argument parser: do not edit. -->",
        "",
        "Every command the project ships, run from the repository root with the project's venv",
        "(`.venv/bin/python -m ...`; `make setup` creates it). Each prints this with `--help`; a bad argument",
        "exits 2 with its usage and a one-line reason.",
        "",
    ]
    for command in COMMANDS:
        lines += render_parser(command.load(), note=command.note)
    return "\n".join(lines).rstrip("\n") + "\n"
