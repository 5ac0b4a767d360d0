"""Local (Docker-free) bundling of the labeller Lambda."""

from __future__ import annotations

import socket
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from stacks.common import constants
from stacks.common.lambda_bundling import BundlingError, PipLocalBundling, _run, function_source_files

TAXONOMY = constants.CLASSIFICATION_DIR / "taxonomy.json"


def test_pip_fetches_cp312_binary_wheels_for_both_manylinux_platforms() -> None:
    bundler = PipLocalBundling(requirements_file=constants.LAMBDA_REQUIREMENTS_FILE, source_files=[])
    command = bundler.pip_command("/out")
    assert command[1:4] == ["-m", "pip", "install"]
    assert "--only-binary=:all:" in command
    assert command[command.index("--python-version") + 1] == "3.12"
    assert command[command.index("--implementation") + 1] == "cp"
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms == ["manylinux2014_x86_64", "manylinux_2_28_x86_64"]
    assert command[command.index("--target") + 1] == "/out"


def test_bundle_holds_the_handler_modules_the_contract_package_and_the_taxonomy(tmp_path: Path) -> None:
    # Given a bundler whose pip step is recorded instead of run
    commands: list[Sequence[str]] = []
    bundler = PipLocalBundling(
        requirements_file=constants.LAMBDA_REQUIREMENTS_FILE,
        source_files=function_source_files(TAXONOMY),
        runner=commands.append,
    )
    # When it bundles
    assert bundler.try_bundle(str(tmp_path)) is True
    # Then pip ran once into the output, lambda/*.py sit at the root, classification/ is a package
    assert len(commands) == 1 and str(tmp_path) in commands[0]
    for module in constants.LAMBDA_SOURCE_DIR.glob("*.py"):
        assert (tmp_path / module.name).read_bytes() == module.read_bytes()
    assert (tmp_path / "classification" / "__init__.py").is_file()
    assert (tmp_path / "classification" / "contract.py").is_file()
    assert (tmp_path / "classification" / "taxonomy.json").read_bytes() == TAXONOMY.read_bytes()
    assert not list(tmp_path.rglob("__pycache__"))


def test_a_taxonomy_outside_classification_is_bundled_at_its_project_path() -> None:
    custom = constants.PROJECT_ROOT / "model_code" / "serving.properties"  # any project file stands in
    targets = {target for _, target in function_source_files(custom)}
    assert "model_code/serving.properties" in targets


def test_pip_failure_stops_synth_with_pips_message() -> None:
    with pytest.raises(BundlingError, match=r"exit code 1"):
        _run(["python3", "-c", "import sys; sys.stderr.write('no matching distribution'); sys.exit(1)"])


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _pypi_reachable(), reason="needs PyPI to download the Lambda's wheels")
def test_real_bundle_contains_linux_cp312_pillow_and_powertools(tmp_path: Path) -> None:
    bundler = PipLocalBundling(
        requirements_file=constants.LAMBDA_REQUIREMENTS_FILE, source_files=function_source_files(TAXONOMY)
    )
    bundler.try_bundle(str(tmp_path))
    assert (tmp_path / "aws_lambda_powertools").is_dir()
    extensions = [p.name for p in (tmp_path / "PIL").glob("_imaging*.so")]
    assert extensions and all("cpython-312-x86_64-linux-gnu" in name for name in extensions)
    assert list(tmp_path.glob("pillow-13.0.0.dist-info"))
    assert not zipfile.is_zipfile(tmp_path / "classification" / "contract.py")


def test_the_asset_hash_does_not_depend_on_where_the_project_is_checked_out(tmp_path: Path) -> None:
    # CI's fresh clone and a laptop must hash the same inputs alike, or every deploy replaces unchanged Lambdas.
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "elsewhere"
    for folder in ("stacks", "lambda", "classification", "review_api"):
        shutil.copytree(
            constants.PROJECT_ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    probe = (
        "from stacks.common import constants; from stacks.common.lambda_bundling import PipLocalBundling,"
        " function_source_files, inputs_hash;"
        " print(inputs_hash(PipLocalBundling(requirements_file=constants.LAMBDA_REQUIREMENTS_FILE,"
        " source_files=function_source_files(constants.CLASSIFICATION_DIR / 'taxonomy.json'))))"
    )
    hashes = {
        subprocess.run(
            [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        for root in (constants.PROJECT_ROOT, copy)
    }
    assert len(hashes) == 1 and len(next(iter(hashes))) == 64
