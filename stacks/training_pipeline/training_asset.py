"""The training code as one S3 asset: a reproducible `sourcedir.tar.gz` built locally (no Docker).

The SageMaker training toolkit in the Hugging Face DLC downloads `sagemaker_submit_directory` (it must be a
`.tar.gz` object), extracts it to the code directory, installs a root-level `requirements.txt` and runs
`sagemaker_program` from there. A CDK directory asset is a zip, so the archive is built by a local bundler with
`BundlingOutput.ARCHIVED`. Layout inside the archive:

    requirements.txt            (copy of training_job/requirements.txt: the toolkit only looks at the root)
    training_job/...            (launch.py, train.py, evaluate.py, configs/ ...)
    classification/...          (the shared contract and taxonomy)

Nothing of model_code/ ships: it is the endpoint's (serving.properties); the evaluation reproduces the endpoint's
decoding itself (training_job/constrained.py).

The archive is byte-for-byte reproducible (sorted entries, fixed mtime/owner/mode, gzip without a timestamp) and
the asset hash is computed from the inputs, so an unchanged tree never uploads a new asset.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, BundlingOutput, DockerImage, ILocalBundling
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from stacks.common import constants

ARCHIVE_NAME = "sourcedir.tar.gz"
ENTRY_POINT = "training_job/launch.py"  # sagemaker_program, relative to the archive root
TRAINING_DIR = constants.PROJECT_ROOT / "training_job"
TRAINING_REQUIREMENTS = TRAINING_DIR / "requirements.txt"
# (directory, glob): every file of the training code and the contract.
CODE_TREES: tuple[tuple[Path, str], ...] = (
    (TRAINING_DIR, "**/*"),
    (constants.CLASSIFICATION_DIR, "**/*"),
)
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def archive_members(trees: Sequence[tuple[Path, str]] = CODE_TREES) -> list[tuple[Path, str]]:
    """(file on disk, path inside the archive), sorted: the code trees' files plus the root requirements file."""
    members = [(TRAINING_REQUIREMENTS, "requirements.txt")]
    for root, pattern in trees:
        for path in sorted(root.glob(pattern)):
            if (
                path.is_file()
                and not _SKIPPED_PARTS.intersection(path.parts)
                and path.suffix not in _SKIPPED_SUFFIXES
            ):
                members.append((path, path.relative_to(constants.PROJECT_ROOT).as_posix()))
    return sorted(members, key=lambda member: member[1])


def build_archive(members: Sequence[tuple[Path, str]], destination: Path) -> Path:
    """Write a reproducible tar.gz of `members` to `destination`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for source, name in members:
            data = source.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
            archive.addfile(info, io.BytesIO(data))
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
        packed.write(buffer.getvalue())
    return destination


def inputs_hash(members: Sequence[tuple[Path, str]]) -> str:
    digest = hashlib.sha256()
    for source, name in members:
        digest.update(name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class TarballBundling:
    """ILocalBundling that writes the training archive (CDK then uploads that single file as the asset)."""

    def __init__(self, members: Sequence[tuple[Path, str]]) -> None:
        self.members = list(members)

    def try_bundle(self, output_dir: str, options: BundlingOptions | None = None) -> bool:
        path = build_archive(self.members, Path(output_dir) / ARCHIVE_NAME)
        print(
            f"bundling training code: {len(self.members)} files -> {ARCHIVE_NAME} ({path.stat().st_size:,} bytes)",
            file=sys.stderr,
        )
        return True


def training_code_asset(scope: Construct, construct_id: str) -> s3_assets.Asset:
    """The asset; its `s3_object_url` is what `sagemaker_submit_directory` points at."""
    members = archive_members()
    return s3_assets.Asset(
        scope,
        construct_id,
        path=str(TRAINING_DIR),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=inputs_hash(members),
        bundling=BundlingOptions(
            # Never pulled: the local bundler always succeeds or raises. CDK requires an image regardless.
            image=DockerImage.from_registry("public.ecr.aws/docker/library/python:3.12-slim"),
            local=TarballBundling(members),
            output_type=BundlingOutput.ARCHIVED,
        ),
    )
