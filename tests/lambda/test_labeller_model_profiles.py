"""Day one: the labeller serving the base model (its profile read beside its weights), margin routing, and the
reclassify backfill that relabels what the base model labelled once the first fine-tune is served."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import handler
import pytest
from botocore.exceptions import ClientError
from labeller_aws import DynamoLabelStore, S3ModelProfiles, S3ObjectStore
from labeller_core import Labeller, TransientFault
from labeller_inputs import ObjectRef
from labeller_testkit import (
    BUCKET,
    MODEL_ID,
    REGION,
    TABLE,
    TRAINING_BUCKET,
    Aws,
    FakeContext,
    base_answer,
    labeller_config,
    photo,
    queue_endpoint_reply,
    vllm_answer,
)

from classification.contract import Taxonomy
from classification.model_profile import BASE, FINE_TUNE

PARAMETER = "/hotel-photos/model/current"
STAGED_BASE = f"s3://{TRAINING_BUCKET}/base-models/llava-hf/llava-v1.6-mistral-7b-hf/0123abcd/"
FIRST_FINE_TUNE = f"s3://{TRAINING_BUCKET}/models/photo-labeler-run-1/"


def _stage_record(aws: Aws, model_uri: str, record: bytes) -> None:
    key = model_uri.removeprefix(f"s3://{TRAINING_BUCKET}/") + "model_profile.json"
    aws.s3.put_object(Bucket=TRAINING_BUCKET, Key=key, Body=record)


def _serve(aws: Aws, monkeypatch: pytest.MonkeyPatch, model_uri: str) -> None:
    """The registry names `model_uri` and a new execution environment starts (the real handler's wiring)."""
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER, Value=model_uri, Type="String", Overwrite=True
    )
    monkeypatch.setenv("MODEL_PARAMETER_NAME", PARAMETER)
    handler.get_labeller.cache_clear()


def _backfill(keys: list[str], *, reclassify: bool) -> dict[str, int]:
    event = {"Items": [{"Key": key} for key in keys], "BatchInput": {"bucket": BUCKET, "reclassify": reclassify}}
    return handler.backfill_handler(event, FakeContext())


def test_the_base_models_answers_go_to_review_with_their_margin_until_a_margin_threshold_is_set(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the staged base model, served through the registry, with its profile record beside the weights
    _stage_record(aws, STAGED_BASE, BASE.record())
    _serve(aws, monkeypatch, STAGED_BASE)
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h1/pool.jpg", Body=photo((0, 90, 200)))
    queue_endpoint_reply(base_answer("Pool", first=0.9, rival="Spa", rival_first=0.05))

    # When the photo is labelled
    assert _backfill(["uploads/h1/pool.jpg"], reclassify=False)["needs_review"] == 1

    # Then it waits for a reviewer although the model was sure: no margin threshold is calibrated yet
    item = aws.item("uploads/h1/pool.jpg")
    assert item is not None and (item["label"], item["model"], item["status"]) == (
        "Pool",
        STAGED_BASE,
        "NEEDS_REVIEW",
    )
    assert float(item["margin"]) == pytest.approx(0.9 - 0.05)
    assert item["reason"] == (
        "every answer of the base model goes to review until a margin threshold is calibrated (margin 0.850)"
    )

    # When step 4's evidence set BASE_MARGIN_THRESHOLD (upload.base_margin_threshold) and two photos come in
    monkeypatch.setenv("BASE_MARGIN_THRESHOLD", "0.5")
    handler.get_labeller.cache_clear()
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h1/sure.jpg", Body=photo((10, 90, 200)))
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h1/unsure.jpg", Body=photo((200, 90, 10)))
    queue_endpoint_reply(base_answer("Pool", first=0.9, rival="Spa", rival_first=0.05))
    queue_endpoint_reply(base_answer("Hot springs", first=0.45, rival="Spa", rival_first=0.4))
    summary = _backfill(["uploads/h1/sure.jpg", "uploads/h1/unsure.jpg"], reclassify=False)

    # Then the clear answer is labelled and the close call goes to review with its margin as the reason
    assert (summary["labeled"], summary["needs_review"]) == (1, 1)
    assert aws.item("uploads/h1/sure.jpg")["status"] == "LABELED"  # type: ignore[index]
    unsure = aws.item("uploads/h1/unsure.jpg")
    assert unsure is not None and unsure["label"] == "Hot springs"
    assert unsure["reason"] == "margin 0.050 is below 0.5"


def test_once_the_fine_tune_serves_a_reclassify_backfill_relabels_what_the_base_labelled_not_what_people_decided(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three photos labelled by the base model, one of them decided by a reviewer since
    _stage_record(aws, STAGED_BASE, BASE.record())
    _serve(aws, monkeypatch, STAGED_BASE)
    keys = [f"uploads/h2/{name}.jpg" for name in ("a", "b", "c")]
    for index, key in enumerate(keys):
        aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo((40 * index, 200, 10)))
        queue_endpoint_reply(base_answer("Bar", first=0.4, rival="Restaurant", rival_first=0.3))
    assert _backfill(keys, reclassify=False)["needs_review"] == 3
    aws.dynamodb.update_item(
        TableName=TABLE,
        Key={"image_uri": {"S": f"s3://{BUCKET}/{keys[0]}"}},
        UpdateExpression="SET #s = :s, review_decision = :d, human_label = :h",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "REVIEWED"}, ":d": {"S": "correct"}, ":h": {"S": "Restaurant"}},
    )

    # When the gated fine-tune is rolled out (the pipeline registers it; it has no base-profile record) and the
    # reclassify backfill runs
    _serve(aws, monkeypatch, FIRST_FINE_TUNE)
    for _ in keys[1:]:
        queue_endpoint_reply(vllm_answer("Bar", logprob=-0.01))
    summary = _backfill(keys, reclassify=True)

    # Then the base model's unreviewed labels are replaced by the fine-tune's (its profile's request, confidence
    # routing), and the reviewer's decision stands
    assert (summary["labeled"], summary["skipped"]) == (2, 1)
    relabelled = [aws.item(key) for key in keys[1:]]
    assert [(i["model"], i["status"], i["label"]) for i in relabelled if i] == [
        (FIRST_FINE_TUNE, "LABELED", "Bar")
    ] * 2
    decided = aws.item(keys[0])
    assert decided is not None and (decided["model"], decided["human_label"]) == (STAGED_BASE, "Restaurant")

    # And a second reclassify finds nothing left that the base model labelled
    assert _backfill(keys, reclassify=True)["skipped"] == 3


class _RecordingEndpoint:
    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.sent: list[bytes] = []

    def invoke(self, body: bytes) -> bytes:
        self.sent.append(body)
        return json.dumps(self.reply).encode()


@pytest.mark.parametrize(("record", "profile"), [(BASE.record(), BASE), (None, FINE_TUNE)])
def test_the_request_sent_is_the_profile_of_the_model_that_answers_it(
    aws: Aws, record: bytes | None, profile: Any
) -> None:
    # Given the served model's record (or none: a model trained before profiles existed)
    if record is not None:
        _stage_record(aws, STAGED_BASE, record)
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h3/x.jpg", Body=photo((90, 90, 90)))
    answer = base_answer("Room", 0.7, "Lobby", 0.2) if profile is BASE else vllm_answer("Room")
    endpoint = _RecordingEndpoint(answer)
    labeller = Labeller(
        labeller_config(os.environ),
        objects=S3ObjectStore(aws.s3),
        endpoint=endpoint,
        labels=DynamoLabelStore(aws.dynamodb, TABLE),
        model_id=lambda: STAGED_BASE,
        profiles=S3ModelProfiles(aws.s3),
    )

    # When the photo is labelled
    outcome = labeller.process(ObjectRef(BUCKET, "uploads/h3/x.jpg"))

    # Then the endpoint got exactly the profile's request for the normalised photo, and its answer was read
    (sent,) = endpoint.sent
    request = json.loads(sent)
    jpeg_url = request["messages"][0]["content"][1]["image_url"]["url"]
    assert request == Taxonomy.load().build_request(b"", profile=profile) | {
        "messages": profile.messages(Taxonomy.load(), {"type": "image_url", "image_url": {"url": jpeg_url}})
    }
    assert outcome.label == "Room"


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_profiles_are_read_once_per_model_and_a_fault_is_transient(aws: Aws) -> None:
    # Given a staged base model and a fine-tune without a record
    _stage_record(aws, STAGED_BASE, BASE.record())
    clock = _Clock()
    profiles = S3ModelProfiles(aws.s3, max_age_seconds=60, clock=clock)

    # Then each resolves to its profile; a model id that is no S3 prefix (MODEL_ID "none") is a fine-tune
    assert profiles(STAGED_BASE) is BASE
    assert profiles(FIRST_FINE_TUNE) is FINE_TUNE
    assert profiles(MODEL_ID) is FINE_TUNE

    # And a changed record is seen only after the cache period
    _stage_record(aws, STAGED_BASE, FINE_TUNE.record())
    clock.now = 59
    assert profiles(STAGED_BASE) is BASE
    clock.now = 60
    assert profiles(STAGED_BASE) is FINE_TUNE

    # A record naming no profile, or S3 refusing the read, fails the record as transient (never a guess)
    _stage_record(aws, FIRST_FINE_TUNE, b'{"profile": "tuned"}')
    with pytest.raises(TransientFault, match="unknown model profile 'tuned'"):
        S3ModelProfiles(aws.s3)(FIRST_FINE_TUNE)

    class Denied:
        def list_objects_v2(self, **params: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "ListObjectsV2")

    with pytest.raises(TransientFault, match="AccessDenied"):
        S3ModelProfiles(Denied())(STAGED_BASE)
