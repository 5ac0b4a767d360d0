"""tools.stage_base_model offline: a local `--local-dir` download as the source, moto's S3 as the training bucket.

The source folder is what `hf download --local-dir` leaves: the files plus huggingface_hub's own download records
(written here with huggingface_hub's writer), whose hash is the Hub's ETag. The expected hashes are computed
independently of the tool: SHA-256 with hashlib for the LFS files, the git blob id with the real `git hash-object`
for the small ones (what the Hub lists: huggingface_hub RepoSibling.blob_id / BlobLfsInfo.sha256).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from huggingface_hub._local_folder import write_download_metadata
from huggingface_hub.hf_api import ModelInfo
from moto import mock_aws

from classification.image_tokens import GRID_PINPOINTS
from classification.model_profile import BASE, resolve_profile
from tools import stage_base_model as staging

REPO = "llava-hf/llava-v1.6-mistral-7b-hf"
COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
BUCKET = "photo-labeler-training"
PREFIX = f"base-models/{REPO}/{COMMIT}/"


def _git_blob_id(path: Path) -> str:
    return subprocess.run(
        ["git", "hash-object", "--no-filters", str(path)], check=True, capture_output=True, text=True
    ).stdout.strip()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def download(tmp_path: Path) -> Path:
    """A `--local-dir` download of a small llava-hf-shaped repository at COMMIT, with the Hub's hash records."""
    folder = tmp_path / "download"
    folder.mkdir()
    files = {
        "config.json": json.dumps({"model_type": "llava_next", "image_grid_pinpoints": GRID_PINPOINTS["stock"]}),
        "tokenizer_config.json": json.dumps({"tokenizer_class": "LlamaTokenizer"}),
        "model.safetensors.index.json": json.dumps({"weight_map": {}}),
        "model-00001-of-00002.safetensors": bytes(range(256)) * 4096,
        "model-00002-of-00002.safetensors": bytes(reversed(range(256))) * 2048,
        "README.md": "# not served",
    }
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        etag = _sha256(path) if name.endswith(".safetensors") else _git_blob_id(path)
        write_download_metadata(folder, name, COMMIT, etag)
    return folder


@pytest.fixture
def s3(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _keys(s3: Any) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_a_download_is_checked_uploaded_uncompressed_and_its_uri_printed(download: Path, s3: Any) -> None:
    # When the folder is staged
    out = io.StringIO()
    code = staging.main(["--bucket", BUCKET, "--from-dir", str(download), "--revision", COMMIT], out=out)

    # Then every model file is under base-models/<repo>/<commit>/ as it was downloaded (no README), each with its
    # SHA-256, and the profile record last
    assert code == 0
    model_files = sorted(p.name for p in download.iterdir() if p.is_file() and p.name != "README.md")
    assert _keys(s3) == sorted([*(PREFIX + name for name in model_files), PREFIX + "model_profile.json"])
    for name in model_files:
        head = s3.head_object(Bucket=BUCKET, Key=PREFIX + name)
        assert head["Metadata"]["sha256"] == _sha256(download / name)
        body = s3.get_object(Bucket=BUCKET, Key=PREFIX + name)["Body"].read()
        assert body == (download / name).read_bytes()
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "model_profile.json")["Body"].read())
    assert record["profile"] == "base" and record["source"] == {"repo": REPO, "commit": COMMIT}
    # the labellers resolve the staged prefix to the base profile through the same record
    uri = f"s3://{BUCKET}/{PREFIX}"
    read = lambda bucket, key: s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # noqa: E731
    assert resolve_profile(uri, read=read) is BASE
    lines = out.getvalue().splitlines()
    assert f"model_data_uri={uri}" in lines
    assert lines[0].startswith("[source]") and lines[1].startswith("[check 1/5]") and "matches the Hub" in lines[1]


def test_a_file_whose_hash_differs_from_the_hubs_is_refused_before_anything_is_uploaded(
    download: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given one weight shard altered after the download (same size)
    shard = download / "model-00002-of-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF
    shard.write_bytes(bytes(data))

    # When it is staged, Then it is refused naming the file and both hashes, and nothing reaches the bucket
    assert staging.main(["--bucket", BUCKET, "--from-dir", str(download)], out=io.StringIO()) == 1
    error = capsys.readouterr().err
    assert "model-00002-of-00002.safetensors: sha256" in error and "differs from the Hub's" in error
    assert _keys(s3) == []

    # A small file is checked against its git blob id the same way
    (download / "model-00002-of-00002.safetensors").write_bytes(bytes(reversed(range(256))) * 2048)
    (download / "tokenizer_config.json").write_text('{"tokenizer_class": "Other"}')
    assert staging.main(["--bucket", BUCKET, "--from-dir", str(download)], out=io.StringIO()) == 1
    assert "tokenizer_config.json: git-sha1" in capsys.readouterr().err


class _FailingAfter:
    """S3 whose upload_file breaks after `uploads` files (a dropped connection)."""

    def __init__(self, client: Any, uploads: int) -> None:
        self._client = client
        self.left = uploads
        self.uploaded: list[str] = []

    def upload_file(self, filename: str, bucket: str, key: str, ExtraArgs: dict[str, Any]) -> None:
        if self.left == 0:
            raise ConnectionError("connection reset by peer")
        self.left -= 1
        self.uploaded.append(key.rsplit("/", 1)[1])
        self._client.upload_file(filename, bucket, key, ExtraArgs=ExtraArgs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_an_interrupted_upload_resumes_with_the_files_still_missing(download: Path, s3: Any) -> None:
    # Given a staging whose connection dropped after two files
    manifest = staging.manifest_from_download(REPO, download, COMMIT)
    broken = _FailingAfter(s3, uploads=2)
    with pytest.raises(ConnectionError):
        staging.stage(bucket=BUCKET, from_dir=download, s3=broken, say=lambda _: None)
    assert len(broken.uploaded) == 2
    assert PREFIX + "model_profile.json" not in _keys(s3)  # unfinished: no record, nothing serves it

    # When it is run again
    again = _FailingAfter(s3, uploads=99)
    lines: list[str] = []
    uri = staging.stage(bucket=BUCKET, from_dir=download, s3=again, say=lines.append)

    # Then only the missing files are sent, the others are recognised by size and SHA-256, and it completes
    assert sorted(again.uploaded) == sorted(set(f.name for f in manifest.files) - set(broken.uploaded))
    assert sum("already uploaded" in line for line in lines) == 2
    assert uri == f"s3://{BUCKET}/{PREFIX}"
    assert PREFIX + "model_profile.json" in _keys(s3)


def test_a_folder_of_another_commit_or_without_download_records_is_refused(
    download: Path, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert staging.main(["--bucket", BUCKET, "--from-dir", str(download), "--revision", "f" * 40]) == 1
    assert f"holds commit {COMMIT}, not the pinned revision" in capsys.readouterr().err
    bare = tmp_path / "copied"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    assert staging.main(["--bucket", BUCKET, "--from-dir", str(bare)]) == 1
    assert "hf download" in capsys.readouterr().err


def test_a_model_not_on_the_base_profiles_grid_is_refused(download: Path, s3: Any) -> None:
    config = download / "config.json"
    config.write_text(json.dumps({"image_grid_pinpoints": GRID_PINPOINTS["compact"]}))
    write_download_metadata(download, "config.json", COMMIT, _git_blob_id(config))
    with pytest.raises(staging.StagingError, match="not the stock grid the base profile serves"):
        staging.stage(bucket=BUCKET, from_dir=download, s3=s3, say=lambda _: None)


def test_the_hubs_file_metadata_lists_the_model_files_with_their_hashes() -> None:
    # Given the Hub API's answer to model_info(files_metadata=True), parsed by huggingface_hub itself
    info = ModelInfo(
        id=REPO,
        sha=COMMIT,
        siblings=[
            {"rfilename": "README.md", "size": 10, "blobId": "1" * 40},
            {"rfilename": "config.json", "size": 1500, "blobId": "2" * 40},
            {
                "rfilename": "model-00001-of-00004.safetensors",
                "size": 4_900_000_000,
                "blobId": "3" * 40,
                "lfs": {"size": 4_900_000_000, "sha256": "a" * 64, "pointerSize": 135},
            },
            {"rfilename": "images/demo.png", "size": 9, "blobId": "4" * 40},
        ],
    )

    # Then the manifest keeps the served files, with the LFS SHA-256 for weights and the git blob id otherwise
    manifest = staging.manifest_from_model_info(REPO, info)
    assert manifest.commit == COMMIT
    assert [(f.name, f.digest, f.size, f.kind) for f in manifest.files] == [
        ("config.json", "2" * 40, 1500, "git-sha1"),
        ("model-00001-of-00004.safetensors", "a" * 64, 4_900_000_000, "sha256"),
    ]


def test_the_git_blob_id_is_gits_own(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(b'{"a": 1}\n')
    assert staging.git_blob_sha1(path) == _git_blob_id(path)
