"""The labelling job's code as one S3 asset (a zip built locally, no Docker) and the entry point that runs it.

The job's container is the endpoint's pinned LMI image, which has no boto3 (REFERENCE: its
lmi-container-requirements.txt) and no SageMaker training toolkit. So the asset bundles, exactly as the Lambda's
bundle does (stacks/common/lambda_bundling.PipLocalBundling): the pinned pure-Python wheels of
labelling_job/requirements.txt for the image's Python, then the sources, at the archive root:

    labelling_job/            the job (run.py, engine.py, progress.py, job_environment.py)
    labeller_core.py ...      the labeller's own modules, as the Lambda bundle places them (LAMBDA_MODULES)
    classification/           the contract and the configured taxonomy
    stacks/serving/serving_properties.py (+ common/constants.py), model_code/serving.properties
    boto3/, botocore/, ...    the bundled dependencies

The asset reaches the container as the `code` input channel (a file under /opt/ml/input/data/code/), and
`ContainerEntrypoint` = BOOTSTRAP: unpack it to /opt/ml/code and run `labelling_job.run` from there.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import AssetHashType, BundlingOptions, DockerImage
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from stacks.common import constants
from stacks.common.lambda_bundling import PipLocalBundling, Runner, inputs_hash

LABELLING_JOB_DIR = constants.PROJECT_ROOT / "labelling_job"
REQUIREMENTS_FILE = LABELLING_JOB_DIR / "requirements.txt"
# The LMI image's interpreter (djl-serving serving/docker/lmi.Dockerfile: system Python 3.12): the wheels' tag.
LMI_PYTHON_VERSION = "3.12"
# What the job imports from lambda/: the labeller's core and its AWS data access, the scheduled mode's labeller,
# the manifest and window file formats. Not the handlers (Powertools is not in the image).
LAMBDA_MODULES = (
    "labeller_core.py",
    "labeller_inputs.py",
    "labeller_aws.py",
    "scheduled_core.py",
    "window_files.py",
)
STACKS_MODULES = (
    "__init__.py",
    "common/__init__.py",
    "common/constants.py",
    "serving/__init__.py",
    "serving/serving_properties.py",
)
ENTRY_MODULE = "labelling_job.run"
CODE_CHANNEL_NAME = "code"  # the input channel the bundle arrives on (BOOTSTRAP reads input/data/code/)
# ContainerEntrypoint items are at most 256 characters (CreateTrainingJob, AlgorithmSpecification), hence one line.
# LABELLING_ROOT replaces /opt/ml in a local rehearsal (labelling_job/job_environment.py reads it too).
BOOTSTRAP = (
    "import glob,os,runpy,sys,zipfile as z;r=os.environ.get('LABELLING_ROOT','/opt/ml');d=r+'/code';"
    "z.ZipFile(sorted(glob.glob(r+'/input/data/code/*'))[0]).extractall(d);sys.path[:0]=[d];"
    f"runpy.run_module('{ENTRY_MODULE}',run_name='__main__')"
)
ENTRYPOINT = ("python3", "-c", BOOTSTRAP)
_SKIPPED = {"__pycache__", ".pytest_cache"}


def source_files(taxonomy_file: Path) -> list[tuple[Path, str]]:
    """(file on disk, path inside the bundle) of every source the job runs, the configured taxonomy included."""
    root = constants.PROJECT_ROOT
    files = [(constants.LAMBDA_SOURCE_DIR / name, name) for name in LAMBDA_MODULES]
    files += [(root / "stacks" / name, f"stacks/{name}") for name in STACKS_MODULES]
    files.append((constants.SERVING_PROPERTIES_FILE, "model_code/serving.properties"))
    for folder in (LABELLING_JOB_DIR, constants.CLASSIFICATION_DIR):
        files += [
            (path, path.relative_to(root).as_posix())
            for path in sorted(folder.rglob("*"))
            if path.is_file() and not _SKIPPED.intersection(path.parts) and path.suffix != ".pyc"
        ]
    taxonomy_target = taxonomy_file.resolve().relative_to(root).as_posix()
    if taxonomy_target not in {target for _, target in files}:
        files.append((taxonomy_file, taxonomy_target))
    return files


def bundler(taxonomy_file: Path, *, runner: Runner | None = None) -> PipLocalBundling:
    """The local bundler: pinned wheels for the LMI image's Python, then the sources."""
    return PipLocalBundling(
        requirements_file=REQUIREMENTS_FILE,
        source_files=source_files(taxonomy_file),
        python_version=LMI_PYTHON_VERSION,
        name="labelling job",
        **({"runner": runner} if runner is not None else {}),
    )


def labelling_code_asset(scope: Construct, construct_id: str, *, taxonomy_file: Path) -> s3_assets.Asset:
    """The zip asset of the job's code; its object is the `code` channel's S3 URI."""
    local = bundler(taxonomy_file)
    return s3_assets.Asset(
        scope,
        construct_id,
        path=str(LABELLING_JOB_DIR),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=inputs_hash(local),
        bundling=BundlingOptions(
            # Never pulled: the local bundler always succeeds or raises. CDK requires an image regardless.
            image=DockerImage.from_registry("public.ecr.aws/docker/library/python:3.12-slim"),
            local=local,
        ),
    )


__all__ = [
    "BOOTSTRAP",
    "CODE_CHANNEL_NAME",
    "ENTRYPOINT",
    "LAMBDA_MODULES",
    "bundler",
    "labelling_code_asset",
    "source_files",
]
