"""`make test` sets up what the suite needs, the review page's browser included, and says loudly when it cannot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_installs_the_browser_or_says_loudly_that_its_tests_will_be_skipped(tmp_path: Path) -> None:
    # Given set-up stamps that are up to date, a stand-in pytest, and a PATH with neither chromium nor a working
    # apt-get (no root, no mirror)
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    for name in ("train", "serve", "transformers4", "node"):
        (stamps / f"{name}.stamp").touch()
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "pytest").write_text("#!/bin/sh\necho pytest-ran\n")
    (tools / "apt-get").write_text("#!/bin/sh\necho 'E: Could not open lock file' >&2\nexit 100\n")
    for tool in tools.iterdir():
        tool.chmod(0o755)
    make = shutil.which("make")
    assert make, "make is needed to run the project's own entry points"

    # When `make test` runs
    result = subprocess.run(
        [make, "--no-print-directory", "test", f"STAMPS={stamps}", f"BIN={tools}"],
        cwd=ROOT,
        env={"PATH": str(tools), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    # Then it tried to install the browser, said loudly that the browser tests will be skipped, and ran the suite
    output = result.stdout + result.stderr
    assert "installing Debian's chromium and chromium-driver" in output
    assert "tests (tests/review_web/) will be SKIPPED" in output
    assert output.index("SKIPPED") < output.index("pytest-ran") and result.returncode == 0, output
