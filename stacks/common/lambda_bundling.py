"""Bundle the labeller Lambda without Docker: pip fetches manylinux cp312 wheels, then the sources are copied.

`npx cdk synth` calls `try_bundle` for the function's asset. The asset hash is computed from the inputs
(requirements, lambda/*.py, classification/, the taxonomy file and the pip flags), not from the output, so pin
every requirement: an unpinned one could change the bundle without changing the hash.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from stacks.common import constants

Runner = Callable[[Sequence[str]], None]
# Every function of the app runs what this bundler fetched, cp312 wheels for x86_64
# (constants.LAMBDA_WHEEL_PLATFORMS): the runtime and the architecture are fixed here, beside them.
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
assert RUNTIME.name == f"python{constants.LAMBDA_PYTHON_VERSION}", "runtime and bundled wheels disagree"


class BundlingError(RuntimeError):
    """pip could not produce the Lambda's dependencies (offline, unpinned/unknown package, no matching wheel)."""


def _run(command: Sequence[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BundlingError(
            f"`{' '.join(command)}` failed with exit code {result.returncode}:\n{result.stderr.strip()[-4000:]}"
        )


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """ILocalBundling that installs wheels for the Lambda platform and copies the function's sources."""

    def __init__(
        self,
        *,
        requirements_file: Path,
        source_files: Sequence[tuple[Path, str]],
        python_version: str = constants.LAMBDA_PYTHON_VERSION,
        platforms: Sequence[str] = constants.LAMBDA_WHEEL_PLATFORMS,
        runner: Runner = _run,
        name: str = "Lambda",
    ) -> None:
        self.requirements_file = requirements_file
        self.source_files = list(source_files)  # (file on disk, path inside the bundle)
        self.python_version = python_version
        self.platforms = tuple(platforms)
        self._runner = runner
        self.name = name  # what the progress lines call the bundle

    def pip_command(self, output_dir: str) -> list[str]:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        command += ["--target", output_dir, "--requirement", str(self.requirements_file)]
        command += ["--only-binary=:all:", "--implementation", "cp", "--python-version", self.python_version]
        for platform in self.platforms:
            command += ["--platform", platform]
        # Lambda's runtime compiles on import; shipping .pyc for another interpreter only adds size.
        command += ["--no-compile"]
        return command

    def try_bundle(self, output_dir: str, options: BundlingOptions | None = None) -> bool:
        print(
            f"bundling {self.name}: pip install -r {self.requirements_file.name} for cp{self.python_version}",
            file=sys.stderr,
        )
        self._runner(self.pip_command(output_dir))
        out = Path(output_dir)
        for source, target in self.source_files:
            destination = out / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
        print(f"bundling {self.name}: copied {len(self.source_files)} source files", file=sys.stderr)
        return True


def function_source_files(taxonomy_file: Path) -> list[tuple[Path, str]]:
    """lambda/*.py at the bundle root, classification/ as a package, and the configured taxonomy file."""
    files = [(path, path.name) for path in sorted(constants.LAMBDA_SOURCE_DIR.glob("*.py"))]
    files += [
        (path, path.relative_to(constants.PROJECT_ROOT).as_posix())
        for path in sorted(constants.CLASSIFICATION_DIR.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]
    taxonomy_target = taxonomy_file.resolve().relative_to(constants.PROJECT_ROOT).as_posix()
    if taxonomy_target not in {target for _, target in files}:
        files.append((taxonomy_file, taxonomy_target))
    return files


def function_code(taxonomy_file: Path, *, runner: Runner = _run) -> lambda_.Code:
    """The function's code asset, bundled locally (Docker is never needed)."""
    bundler = PipLocalBundling(
        requirements_file=constants.LAMBDA_REQUIREMENTS_FILE,
        source_files=function_source_files(taxonomy_file),
        runner=runner,
    )
    return lambda_.Code.from_asset(
        str(constants.LAMBDA_SOURCE_DIR),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=inputs_hash(bundler),
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds or raises. CDK requires an image regardless.
            image=lambda_.Runtime.PYTHON_3_12.bundling_image,
            local=bundler,
        ),
    )


def inputs_hash(bundler: PipLocalBundling) -> str:
    """The asset hash of a bundle: its pinned requirements, its sources and pip's flags."""
    digest = hashlib.sha256()
    # The command without the interpreter and with the requirements path relative to the project: the same
    # inputs hash the same in any checkout (CI's clone, a laptop), so a deploy never replaces an unchanged Lambda.
    command = bundler.pip_command("<out>")[1:]
    requirements = str(bundler.requirements_file)
    relative = bundler.requirements_file.resolve().relative_to(constants.PROJECT_ROOT).as_posix()
    digest.update(" ".join(relative if part == requirements else part for part in command).encode())
    for source, target in [(bundler.requirements_file, "requirements.txt"), *bundler.source_files]:
        digest.update(target.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


__all__ = [
    "ARCHITECTURE",
    "RUNTIME",
    "BundlingError",
    "PipLocalBundling",
    "function_code",
    "function_source_files",
    "inputs_hash",
]
