"""Stage the base model once: download a pinned revision, check every file's hash, upload it for serving.

    python -m tools.stage_base_model --bucket TRAINING_BUCKET [--revision COMMIT_OR_BRANCH]
        [--repo llava-hf/llava-v1.6-mistral-7b-hf] [--download-dir DIR] [--profile base|base-prefilled]
    python -m tools.stage_base_model --bucket TRAINING_BUCKET --from-dir DIR [--revision COMMIT]   # no network

1. Resolves the revision to its commit through the Hub (`HfApi.model_info(files_metadata=True)`), whose metadata
   lists every file with its size and hash: the SHA-256 of an LFS file (the weights), the git blob SHA-1 of a
   small one. The staged copy is named after the commit, so it never changes under a deployed endpoint.
2. Downloads the model files (`*.json`, `*.safetensors`, `tokenizer.model`, `*.jinja`: what vLLM/LMI load; no
   README, no duplicate `.bin` weights) with `snapshot_download(local_dir=DIR)`, which resumes an interrupted
   download and records each file's commit and hash beside it (`DIR/.cache/huggingface/download/*.metadata`).
   `--from-dir` stages a folder downloaded earlier that way (`hf download REPO --revision R --local-dir DIR`)
   without any network: the hashes recorded at download time are the Hub's.
3. Checks every file against the Hub's hash (SHA-256 or git blob SHA-1, recomputed from the bytes on disk) and
   size, and that the image grid in config.json is the one the profile serves (the base model was trained on the
   stock anyres grid). Any mismatch stops it before anything is uploaded (exit 1), naming the file.
4. Uploads the files uncompressed under `s3://BUCKET/base-models/<repo>/<commit>/` (the layout SageMaker serves as
   an S3Prefix model and the training pipeline takes as `base_model_s3_uri`), each with its SHA-256 in the
   object's metadata. Resumable: a file already there with the same size and SHA-256 is skipped, so a second run
   after an interruption uploads only what is missing (a file cut off mid-upload is sent again whole; the bucket's
   lifecycle rule removes its incomplete parts after a week).
5. Uploads `model_profile.json` last (classification/model_profile.py: which profile to serve it with, and where
   it came from): a prefix without it is an unfinished staging. Prints `model_data_uri=s3://...` and the next step.

Needs Hugging Face access for steps 1-2 (the model is public; `HF_TOKEN` if your network requires one) and the
deployer's AWS credentials (s3:PutObject under base-models/ of the training bucket, the stack's
`TrainingBucketName` output). About 15 GB of disk in DIR and 15 GB of upload. Exit codes: 0 staged, 1 refused (a
hash, size, grid or revision mismatch, a missing file), 2 usage.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from classification.image_tokens import GRID_PINPOINTS
from classification.model_profile import BASE, PROFILE_FILE, PROFILES, ModelProfile, profile_named
from stacks.common import constants

DEFAULT_REPO = "llava-hf/llava-v1.6-mistral-7b-hf"  # training_job/configs/sft_llava_next.yaml model_name_or_path
DEFAULT_REVISION = "main"  # resolved to a commit, which names the staged copy
# What vLLM (LMI) and training load from a llava-hf checkpoint; the rest of the repository (README, images, a
# second copy of the weights as .bin) is never read.
MODEL_FILES = ("*.json", "*.safetensors", "tokenizer.model", "*.jinja")
CHUNK = 8 * 1024 * 1024  # bytes hashed at a time: flat memory for 5-GB shards
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
METADATA_DIR = Path(".cache") / "huggingface" / "download"  # huggingface_hub's record of a local_dir download


class StagingError(RuntimeError):
    """The model cannot be staged as asked; the message names the file or the setting."""


@dataclass(frozen=True)
class ExpectedFile:
    """A file as the Hub describes it at the pinned commit."""

    name: str
    digest: str  # the Hub's hash: a SHA-256 (LFS) or a git blob SHA-1 (a small file)
    size: int | None = None

    @property
    def kind(self) -> str:
        return "sha256" if _SHA256_RE.match(self.digest) else "git-sha1"


@dataclass(frozen=True)
class Manifest:
    repo: str
    commit: str
    files: tuple[ExpectedFile, ...]


def is_model_file(name: str) -> bool:
    return "/" not in name and any(fnmatch.fnmatch(name, pattern) for pattern in MODEL_FILES)


def manifest_from_model_info(repo: str, info: Any) -> Manifest:
    """The Hub's metadata (`HfApi.model_info(..., files_metadata=True)`) of the model files at its commit."""
    files = []
    for sibling in info.siblings or []:
        if not is_model_file(sibling.rfilename):
            continue
        digest = sibling.lfs.sha256 if sibling.lfs is not None else sibling.blob_id
        if not digest:
            raise StagingError(f"the Hub lists {sibling.rfilename} without a hash: ask with files_metadata=True")
        size = sibling.lfs.size if sibling.lfs is not None else sibling.size
        files.append(ExpectedFile(sibling.rfilename, digest, size))
    return Manifest(repo, info.sha, tuple(sorted(files, key=lambda f: f.name)))


def manifest_from_download(repo: str, folder: Path, revision: str | None) -> Manifest:
    """The hashes huggingface_hub recorded when it downloaded `folder` (`local_dir`): the Hub's ETags, i.e. the
    SHA-256 of an LFS file and the git blob SHA-1 of a small one, and the commit each came from."""
    records = folder / METADATA_DIR
    if not records.is_dir():
        raise StagingError(
            f"{folder} has no {METADATA_DIR}: download it with `hf download {repo} --revision <commit> "
            f"--local-dir {folder}` (which records the Hub's hashes) or stage from the Hub"
        )
    files, commits = [], set()
    for record in sorted(records.glob("*.metadata")):
        name = record.name.removesuffix(".metadata")
        if not is_model_file(name):
            continue
        lines = record.read_text(encoding="utf-8").splitlines()
        if len(lines) < 2:
            raise StagingError(f"{record} is not a huggingface_hub download record (commit, hash, time)")
        commits.add(lines[0].strip())
        files.append(ExpectedFile(name, lines[1].strip()))
    if not files:
        raise StagingError(f"{folder} records no model file ({', '.join(MODEL_FILES)})")
    if len(commits) != 1:
        raise StagingError(f"{folder} mixes files of several commits: {', '.join(sorted(commits))}")
    (commit,) = commits
    if revision is not None and revision != commit:
        raise StagingError(f"{folder} holds commit {commit}, not the pinned revision {revision}")
    return Manifest(repo, commit, tuple(files))


def git_blob_sha1(path: Path) -> str:
    """git's object id of a file: SHA-1 of `blob <size>\\0` + its bytes (what the Hub lists for a small file)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    return _hash_into(digest, path)


def sha256_of(path: Path) -> str:
    return _hash_into(hashlib.sha256(), path)


def _hash_into(digest: Any, path: Path) -> str:
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(folder: Path, manifest: Manifest, profile: ModelProfile, say: Callable[[str], None]) -> dict[str, str]:
    """Check every file against the Hub's hash and size; returns each file's SHA-256 for the upload."""
    sha256s: dict[str, str] = {}
    for index, expected in enumerate(manifest.files, start=1):
        path = folder / expected.name
        if not path.is_file():
            raise StagingError(f"{expected.name} is missing from {folder}")
        size = path.stat().st_size
        if expected.size is not None and size != expected.size:
            raise StagingError(f"{expected.name} is {size:,} bytes, the Hub lists {expected.size:,}")
        sha256 = sha256_of(path)
        actual = sha256 if expected.kind == "sha256" else git_blob_sha1(path)
        if actual != expected.digest:
            raise StagingError(
                f"{expected.name}: {expected.kind} {actual} differs from the Hub's {expected.digest} "
                "(a corrupted or altered download: delete it and run again)"
            )
        sha256s[expected.name] = sha256
        say(f"[check {index}/{len(manifest.files)}] {expected.name}: {expected.kind} matches the Hub ({size:,} B)")
    _check_grid(folder, profile)
    return sha256s


def _check_grid(folder: Path, profile: ModelProfile) -> None:
    if profile.image_token_profile is None:
        return
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    wanted = GRID_PINPOINTS[profile.image_token_profile]
    if config.get("image_grid_pinpoints") != wanted:
        raise StagingError(
            f"config.json's image_grid_pinpoints {config.get('image_grid_pinpoints')} are not the "
            f"{profile.image_token_profile} grid the {profile.name} profile serves ({wanted})"
        )


def staged_prefix(manifest: Manifest) -> str:
    return f"{constants.BASE_MODELS_PREFIX}{manifest.repo}/{manifest.commit}/"


def upload(
    s3: Any,
    bucket: str,
    folder: Path,
    manifest: Manifest,
    sha256s: Mapping[str, str],
    profile: ModelProfile,
    say: Callable[[str], None],
) -> str:
    """Upload what is not there yet, then the profile record; returns the model_data_uri."""
    prefix = staged_prefix(manifest)
    for index, expected in enumerate(manifest.files, start=1):
        key = prefix + expected.name
        path = folder / expected.name
        size = path.stat().st_size
        step = f"[upload {index}/{len(manifest.files)}] {expected.name}"
        if _already_there(s3, bucket, key, size, sha256s[expected.name]):
            say(f"{step}: already uploaded (same size and SHA-256), skipped")
            continue
        say(f"{step}: {size / 1e9:.2f} GB to s3://{bucket}/{key}")
        s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": sha256s[expected.name]}})
    record = profile.record(source={"repo": manifest.repo, "commit": manifest.commit})
    s3.put_object(Bucket=bucket, Key=prefix + PROFILE_FILE, Body=record, ContentType="application/json")
    say(f"[profile] {PROFILE_FILE}: serve with the {profile.name} profile")
    return f"s3://{bucket}/{prefix}"


def _already_there(s3: Any, bucket: str, key: str, size: int, sha256: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return head.get("ContentLength") == size and head.get("Metadata", {}).get("sha256") == sha256


def stage(
    *,
    bucket: str,
    repo: str = DEFAULT_REPO,
    revision: str | None = None,
    from_dir: Path | None = None,
    download_dir: Path | None = None,
    profile: ModelProfile = BASE,
    s3: Any = None,
    hub: Any = None,
    say: Callable[[str], None] = print,
) -> str:
    """Steps 1-5 of the module docstring; returns the model_data_uri. StagingError on any refusal."""
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    if from_dir is not None:
        manifest = manifest_from_download(repo, from_dir, revision)
        folder = from_dir
        say(f"[source] {folder}: {len(manifest.files)} model files of {repo} at commit {manifest.commit}")
    else:
        manifest, folder = _download(repo, revision or DEFAULT_REVISION, download_dir, hub, say)
    sha256s = verify(folder, manifest, profile, say)
    return upload(s3, bucket, folder, manifest, sha256s, profile, say)


def _download(
    repo: str, revision: str, download_dir: Path | None, hub: Any, say: Callable[[str], None]
) -> tuple[Manifest, Path]:
    from huggingface_hub import HfApi, snapshot_download

    api = hub or HfApi()
    manifest = manifest_from_model_info(repo, api.model_info(repo, revision=revision, files_metadata=True))
    folder = download_dir or Path(tempfile.mkdtemp(prefix="stage-base-model-"))
    total = sum(f.size or 0 for f in manifest.files)
    files = len(manifest.files)
    say(f"[download] {repo} {revision} = commit {manifest.commit}: {files} files, {total / 1e9:.1f} GB")
    snapshot_download(repo, revision=manifest.commit, local_dir=folder, allow_patterns=list(MODEL_FILES))
    return manifest, folder


def main(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.stage_base_model",
        description="Download the base model at a pinned revision, check every hash, upload it for serving.",
    )
    parser.add_argument("--bucket", required=True, help="the training bucket (stack output TrainingBucketName)")
    parser.add_argument(
        "--repo", default=DEFAULT_REPO, help=f"Hugging Face model repository (default {DEFAULT_REPO})"
    )
    parser.add_argument(
        "--revision",
        default=None,
        help=f"commit (or branch/tag, resolved to its commit; default {DEFAULT_REVISION}); with --from-dir the "
        "folder must hold this commit",
    )
    parser.add_argument("--from-dir", type=Path, default=None, help="stage a `--local-dir` download, offline")
    parser.add_argument("--download-dir", type=Path, default=None, help="where to download (default: a temp dir)")
    parser.add_argument(
        "--profile",
        choices=[name for name in sorted(PROFILES) if PROFILES[name].image_token_profile is not None],
        default=BASE.name,
        help="the profile to serve it with (classification/model_profile.py; default base)",
    )
    args = parser.parse_args(argv)
    say = (lambda line: print(line, file=out, flush=True)) if out else (lambda line: print(line, flush=True))
    if not _BUCKET_RE.match(args.bucket):
        parser.error(f"--bucket {args.bucket!r} is not an S3 bucket name")
    if args.from_dir is not None and not args.from_dir.is_dir():
        parser.error(f"--from-dir {args.from_dir} is not a folder")
    try:
        uri = stage(
            bucket=args.bucket,
            repo=args.repo,
            revision=args.revision,
            from_dir=args.from_dir,
            download_dir=args.download_dir,
            profile=profile_named(args.profile),
            say=say,
        )
    except StagingError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    say(f"model_data_uri={uri}")
    say(
        "next: serve it (docs/day-one.md step 2): register it with `aws ssm put-parameter --name "
        f"/<name_prefix>/model/current --type String --overwrite --value {uri}` and `cdk deploy -c "
        "photo_labeler.training.serve_registered_model=true`, or pin it with -c photo_labeler.endpoint."
        f"model_data_uri={uri}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
