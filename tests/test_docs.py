"""The documentation site builds strict (broken links, missing anchors and pages left out of the navigation fail
it), and the README's links resolve as GitHub resolves them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.docs.pages import broken_links

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of the site whose mkdocs.yml is in `root`, into `site`."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )


@pytest.mark.slow
def test_the_site_builds_strict(tmp_path: Path) -> None:
    # Given the committed docs/ and mkdocs.yml; When built strict (as `make docs` serves it)
    result = build(PROJECT_ROOT, tmp_path / "site")
    # Then every link, anchor and page is accounted for, and the home page and a generated page were written
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").is_file()
    assert (tmp_path / "site" / "assets" / "cost-per-1000-photos.svg").is_file()


@pytest.mark.slow
def test_a_broken_anchor_a_missing_page_and_an_orphan_page_fail_the_build(tmp_path: Path) -> None:
    # Negative control: the same site with the three mistakes strict mode is there to catch
    shutil.copy(PROJECT_ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(PROJECT_ROOT / "docs", tmp_path / "docs")
    limits = tmp_path / "docs" / "limits.md"
    limits.write_text(limits.read_text() + "\n[a](cost.md#no-such-heading) [b](no-such-page.md)\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the navigation\n")

    result = build(tmp_path, tmp_path / "site")

    assert result.returncode != 0
    assert "does not contain an anchor '#no-such-heading'" in result.stderr
    assert "'no-such-page.md', but the target is not found" in result.stderr
    assert "orphan.md" in result.stderr


def test_the_readme_links_resolve() -> None:
    assert broken_links(PROJECT_ROOT / "README.md") == []


def test_a_broken_readme_link_is_named(tmp_path: Path) -> None:
    # Negative control of the check above: a missing file and a missing heading, each named
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "cost.md").write_text("# Cost\n\n## At your traffic\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[ok](docs/cost.md#at-your-traffic) [gone](docs/gone.md) [anchor](docs/cost.md#nope) [web](https://x.y/z)\n"
    )
    assert broken_links(readme) == ["docs/gone.md: no such file", "docs/cost.md#nope: no heading with that anchor"]


def test_the_readme_is_a_landing_page() -> None:
    # The README is a few screens: what, the two commands, modes and cost, deploy, limits, links into the site
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    for heading in ("## Try it", "## Three labelling modes", "## Deploy", "## Limits", "## Documentation"):
        assert heading in readme
    limits = readme[readme.index("## Limits") : readme.index("## Documentation")]
    assert sum(line.startswith("- ") for line in limits.splitlines()) == 5
