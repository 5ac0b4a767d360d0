"""The handler with a model registry (SSM parameter): which model a label records, and when it changes."""

from __future__ import annotations

from typing import Any

import boto3
import handler
import pytest
from botocore.exceptions import ClientError
from handler_testkit import (
    emitted_metrics,
    log_lines,
    make_queue,
    receive,
    run_batch,
    use_labeller,
    warnings_logged,
)
from labeller_aws import MODEL_PARAMETER_MAX_AGE_SECONDS, SsmModelRegistry
from labeller_testkit import BUCKET, MODEL_ID, REGION, Aws, FakeContext, photo, queue_endpoint_reply, vllm_answer

PARAMETER = "/hotel-photos/model/current"
RUN_1 = "s3://hotel-photos-training/models/run-1/"
RUN_2 = "s3://hotel-photos-training/models/run-2/"


def test_with_a_model_registry_labels_name_model_id_until_a_model_is_registered_then_the_registered_one(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function is configured with the registry parameter, which no training run has written yet
    monkeypatch.setenv("MODEL_PARAMETER_NAME", PARAMETER)
    for name, color in (("a", (0, 120, 120)), ("b", (120, 0, 120)), ("c", (120, 120, 240))):
        aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/h5/{name}.jpg", Body=photo(color))
    queue_endpoint_reply(vllm_answer("Bar"))
    queue_endpoint_reply(vllm_answer("Bar"))
    batch_input = {"bucket": BUCKET, "reclassify": False}

    # When two photos are labelled
    items = [{"Key": "uploads/h5/a.jpg"}, {"Key": "uploads/h5/b.jpg"}]
    assert handler.backfill_handler({"Items": items, "BatchInput": batch_input}, FakeContext())["labeled"] == 2

    # Then both record MODEL_ID, and one warning says why
    assert [aws.item(f"uploads/h5/{n}.jpg")["model"] for n in "ab"] == [MODEL_ID, MODEL_ID]  # type: ignore[index]
    assert [message for message in warnings_logged() if PARAMETER in message] == [
        f"model registry parameter {PARAMETER} does not exist (no model registered yet): recording MODEL_ID "
        f"'{MODEL_ID}' as the model"
    ]

    # When the pipeline registers a model and a new execution environment labels the next photo
    boto3.client("ssm", region_name=REGION).put_parameter(Name=PARAMETER, Value=RUN_1, Type="String")
    handler.get_labeller.cache_clear()
    queue_endpoint_reply(vllm_answer("Bar"))
    handler.backfill_handler({"Items": [{"Key": "uploads/h5/c.jpg"}], "BatchInput": batch_input}, FakeContext())

    # Then it records the registered model
    assert aws.item("uploads/h5/c.jpg")["model"] == RUN_1  # type: ignore[index]


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_after_a_new_model_is_registered_a_reclassify_backfill_relabels_once_the_cache_expired(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a photo labelled by run 1, the model the registry names
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=PARAMETER, Value=RUN_1, Type="String")
    clock = ManualClock()
    use_labeller(aws, monkeypatch, model_id=SsmModelRegistry(ssm, PARAMETER, fallback=MODEL_ID, clock=clock))
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h4/a.jpg", Body=photo((240, 240, 0)))
    event = {"Items": [{"Key": "uploads/h4/a.jpg"}], "BatchInput": {"bucket": BUCKET, "reclassify": True}}
    queue_endpoint_reply(vllm_answer("Room"))
    handler.backfill_handler(event, FakeContext())
    assert aws.item("uploads/h4/a.jpg")["model"] == RUN_1  # type: ignore[index]

    # When run 2 is registered and a reclassify backfill runs within the cache period
    ssm.put_parameter(Name=PARAMETER, Value=RUN_2, Type="String", Overwrite=True)
    clock.now += MODEL_PARAMETER_MAX_AGE_SECONDS - 1
    # Then the photo still counts as done for the cached run 1: skipped, not sent to the endpoint
    assert handler.backfill_handler(event, FakeContext())["skipped"] == 1

    # When the cache has expired
    clock.now += 1
    summary = handler.backfill_handler(event, FakeContext())  # moto answers an identical request as before

    # Then the photo is labelled again (the endpoint was called) and the item names run 2
    assert summary["labeled"] == 1
    item = aws.item("uploads/h4/a.jpg")
    assert item is not None and (item["label"], item["model"]) == ("Room", RUN_2)


class ThrottledSsm:
    def get_parameter(self, **params: Any) -> dict[str, Any]:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}, "ResponseMetadata": {}},
            "GetParameter",
        )


def test_a_registry_fault_fails_only_that_record_and_its_redelivery_labels_the_photo(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an upload, and SSM throttling the registry read
    queue, _ = make_queue(aws)
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h3/a.jpg", Body=photo((0, 0, 0)))
    messages = [m for m in receive(aws, queue) if "Records" in m["Body"]]
    use_labeller(aws, monkeypatch, model_id=SsmModelRegistry(ThrottledSsm(), PARAMETER, fallback=MODEL_ID))

    # When the notification is processed
    failed = run_batch(messages)

    # Then the record fails (SQS redelivers it), nothing is written, and the fault is counted
    assert failed == {messages[0]["MessageId"]}
    assert aws.item("uploads/h3/a.jpg") is None
    assert emitted_metrics(log_lines(capsys.readouterr().out))["TransientFailures"] == 1

    # When it is redelivered after SSM recovered
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=PARAMETER, Value=RUN_1, Type="String")
    use_labeller(aws, monkeypatch, model_id=SsmModelRegistry(ssm, PARAMETER, fallback=MODEL_ID))
    queue_endpoint_reply(vllm_answer("Pool"))

    # Then the photo is labelled under the registered model
    assert run_batch(messages) == set()
    assert aws.item("uploads/h3/a.jpg")["model"] == RUN_1  # type: ignore[index]
