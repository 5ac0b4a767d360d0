"""The labelling job end to end, as SageMaker runs it: the CDK asset's bundle (pinned boto3), the container's entry
point, a one-host `SM_*` environment, vLLM's CPU build with the session's trained tiny model, moto's S3 and
DynamoDB. Its labels and confidences must be the served path's (the session's vLLM server, the endpoint's
request) for the same photos."""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from labeller_aws import DynamoLabelStore, S3ObjectStore
from labeller_core import encode_request
from labeller_inputs import ObjectRef, manifest_line
from labeller_testkit import labeller_config
from scheduled_core import PendingRecorder
from training_testkit import COLOURS, colour_photo
from window_files import JobSummary, summary_name

from classification.contract import Taxonomy
from classification.images import normalize
from classification.model_profile import BASE_PREFILLED, FINE_TUNE, PROFILE_FILE, ModelProfile
from local_aws.emulation import LocalAws
from local_aws.labelling_job import SERVE_PYTHON, LocalJob, build_bundle
from local_aws.photos import encode

pytestmark = pytest.mark.slow

PHOTOS_PER_LABEL = 3
MODEL_ID = "s3://models/tiny/model/"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SERVE_PYTHON.is_file():
        pytest.skip(f"{SERVE_PYTHON} missing: the vLLM serving environment is not installed (make setup)")
    return build_bundle(tmp_path_factory.mktemp("labelling-code"))


@pytest.fixture
def local_aws() -> Iterator[LocalAws]:
    with LocalAws(
        bucket="photos", table="labels", queue_name="uploads", upload_prefix="uploads/", max_receive_count=3
    ) as aws:
        yield aws


def served(base_url: str, request: bytes) -> Any:
    """The served path: the endpoint's request body POSTed to the engine's /invocations, as LMI receives it."""
    post = urllib.request.Request(
        base_url + "/invocations", data=request, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(post, timeout=120) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("profile", [FINE_TUNE, BASE_PREFILLED], ids=["fine-tune", "base-prefilled"])
def test_the_job_labels_a_window_like_the_served_path(
    bundle: Path,
    local_aws: LocalAws,
    vllm_server: Any,
    trained_model: Path,
    taxonomy_file: Path,
    tmp_path: Path,
    profile: ModelProfile,
) -> None:
    taxonomy = Taxonomy.load(taxonomy_file)
    # The model directory records the profile it is served with (the prefilled base: BOS, a continued answer)
    model_dir = trained_model
    if profile is not FINE_TUNE:
        model_dir = tmp_path / "model"
        model_dir.mkdir()
        # Every file but the profile record is linked: writing the record through a link would rewrite the
        # session's trained model, and every later test would read it in the wrong profile.
        for path in trained_model.iterdir():
            if path.name != PROFILE_FILE:
                (model_dir / path.name).symlink_to(path)
        (model_dir / PROFILE_FILE).write_bytes(profile.record())
    environ = {
        "ENDPOINT_MODE": "scheduled",
        "TABLE_NAME": local_aws.table,
        "MODEL_ID": MODEL_ID,
        "CONFIDENCE_THRESHOLD": "0.5",
        "UPLOAD_PREFIX": "",
        "HOTEL_ID_PATTERN": r"^uploads/(?P<hotel_id>[^/]+)/",
        "TAXONOMY_FILE": str(taxonomy_file),
    }
    # Given new photos of every label, recorded PENDING by the scheduled upload labeller (moto's server)
    recorder = PendingRecorder(
        labeller_config(environ),
        objects=S3ObjectStore(local_aws.s3),
        labels=DynamoLabelStore(local_aws.dynamodb, local_aws.table),
    )
    rng = np.random.default_rng(7)
    bodies: dict[str, bytes] = {}
    lines = []
    for label in COLOURS:
        for index in range(PHOTOS_PER_LABEL):
            key = f"uploads/h{index}/{label}-{index}.jpg"
            bodies[key] = encode(colour_photo(label, rng, (400, 300)))
            local_aws.s3.put_object(Bucket=local_aws.bucket, Key=key, Body=bodies[key])
            assert recorder.process(ObjectRef(local_aws.bucket, key)).status.value == "PENDING"
            etag = local_aws.s3.head_object(Bucket=local_aws.bucket, Key=key)["ETag"].strip('"')
            lines.append(manifest_line(ObjectRef(local_aws.bucket, key, etag, hotel_id=f"h{index}")))

    # When the container's entry point runs the window's manifest on one host
    job = LocalJob(root=tmp_path / "opt-ml", bundle=bundle, model_dir=model_dir)
    job.put_manifest({"shard-00000.jsonl": "\n".join(lines) + "\n"})
    with (tmp_path / "job.log").open("w") as log:
        code = job.run(
            environ,
            aws_endpoint_url=local_aws.endpoint_url,
            log=log,
            arguments=("--device", "cpu", "--batch-size", "5"),
        )
    output = (tmp_path / "job.log").read_text()
    assert code == 0, output[-4000:]

    # Then every photo has the label, confidence and margin the served path gives the same request
    items = {item["image_uri"].split("/", 3)[3]: item for item in local_aws.items()}
    for key, body in bodies.items():
        expected = taxonomy.parse_response(
            served(vllm_server.base_url, encode_request(taxonomy, normalize(body).jpeg, profile)), profile=profile
        )
        item = items[key]
        assert item["status"] in ("LABELED", "NEEDS_REVIEW"), (key, item)
        assert item["label"] == expected.label, key
        assert math.isclose(float(item["confidence"]), expected.confidence, abs_tol=1e-4), (key, item)
        assert math.isclose(float(item["margin"]), expected.margin, abs_tol=1e-4), (key, item)
        assert item["model"] == MODEL_ID and item["hotel_id"] == key.split("/")[1]
    # and the host's summary, synced with the checkpoint, counts them all, inferred once each
    summary = JobSummary.from_json((job.checkpoint_dir / summary_name("algo-1")).read_text())
    assert (summary.photos, summary.inferred, summary.failed) == (len(bodies), len(bodies), 0)
    assert summary.labeled + summary.needs_review == len(bodies)
    # and the job used the bundle's boto3 (the serving venv has none)
    assert "No module named 'boto3'" not in output
