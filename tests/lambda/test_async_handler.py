"""Async mode through the real handlers and boto3 adapters on moto: upload notification -> submission ->
InvokeEndpointAsync (moto) -> SageMaker's notification -> async_handler -> one label; faults to the DLQ."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import async_handler
import boto3
import handler
import pytest
from async_aws import S3RequestStore, SageMakerAsyncEndpoint
from async_testkit import ASYNC_BUCKET, REQUEST_PREFIX, Submission, create_async_bucket, failure_notification
from async_testkit import success_notification as notification_of
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from labeller_core import TransientFault
from labeller_testkit import BUCKET, ENDPOINT, REGION, Aws, FakeContext, photo, vllm_answer
from moto.core import DEFAULT_ACCOUNT_ID
from test_labeller_handler import emitted_metrics, lambda_event, log_lines, make_queue, receive

from classification.labeller_environment import ConfigError
from local_aws.lambda_runner import sqs_event


@pytest.fixture
def async_aws(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """The moto account of `aws` plus the request bucket, with the functions configured for async mode."""
    monkeypatch.setenv("ENDPOINT_MODE", "async")
    monkeypatch.setenv("ASYNC_REQUEST_BUCKET", ASYNC_BUCKET)
    monkeypatch.setenv("ASYNC_REQUEST_PREFIX", REQUEST_PREFIX)
    create_async_bucket()
    async_handler.get_writer.cache_clear()
    monkeypatch.setattr(async_handler.logger.registered_handler, "stream", io.StringIO())
    yield aws
    async_handler.get_writer.cache_clear()


def queue_async_result(data: dict[str, Any] | str, *, failure: bool = False) -> None:
    """Script moto's InvokeEndpointAsync: the next new InputLocation gets this response (or failure) object."""
    from moto.sagemakerruntime.models import sagemakerruntime_backends

    backend = sagemakerruntime_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend.async_results_queue.append((failure, data if isinstance(data, str) else json.dumps(data)))


def sqs_record(body: str, message_id: str = "n-1") -> dict[str, Any]:
    """One SageMaker notification delivered from the completions queue."""
    message = {
        "MessageId": message_id,
        "ReceiptHandle": "r",
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MD5OfBody": "",
    }
    return sqs_event([message], queue_arn=f"arn:aws:sqs:{REGION}:{DEFAULT_ACCOUNT_ID}:completions", region=REGION)


def submitted(aws: Aws) -> list[Submission]:
    """What the submitter asked for: read back from the claims in the table."""
    store = S3RequestStore(aws.s3, ASYNC_BUCKET, REQUEST_PREFIX)
    return [
        Submission(store.location(item["pending_inference_id"]), item["pending_inference_id"])
        for item in aws.items()
        if "pending_inference_id" in item
    ]


def test_an_upload_is_submitted_by_the_upload_handler_and_labelled_by_the_completion_handler(
    async_aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws = async_aws
    # Given an upload notified to the queue, and the async endpoint's answer scripted in moto
    queue, _dlq = make_queue(aws)
    key = "uploads/h-1/lobby.jpg"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo((240, 0, 0)))
    queue_async_result(vllm_answer("Lobby"))

    # When the unchanged upload handler runs in async mode
    response = handler.lambda_handler(lambda_event(receive(aws, queue)), FakeContext())

    # Then it submits and records the photo as PENDING, counting it as submitted
    assert response == {"batchItemFailures": []}
    item = aws.item(key)
    assert item is not None and item["status"] == "PENDING"
    assert emitted_metrics(log_lines(capsys.readouterr().out))["PhotosSubmitted"] == 1
    [submission] = submitted(aws)
    # and moto answers the same InputLocation with the same OutputLocation: where SageMaker put the response
    output = SageMakerAsyncEndpoint(
        boto3.client("sagemaker-runtime", region_name=REGION),
        ENDPOINT,
        request_ttl_seconds=60,
        invocation_timeout_seconds=60,
    ).submit(submission.input_location, submission.inference_id)

    # When SageMaker's success notification reaches the completion handler
    result = async_handler.lambda_handler(sqs_record(notification_of(submission, output)), FakeContext())

    # Then the photo is labelled, with the label metrics of the real-time path
    assert result == {"batchItemFailures": []}
    item = aws.item(key)
    assert item is not None and (item["status"], item["label"], item["hotel_id"]) == ("LABELED", "Lobby", "h-1")
    metrics = emitted_metrics(log_lines(capsys.readouterr().out))
    assert metrics["PhotosLabeled"] == 1 and metrics["PhotosByLabel"] == 1 and metrics["AsyncInferenceLatency"] > 0


def test_a_poison_message_and_exhausted_retries_fail_only_their_own_records(
    async_aws: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws = async_aws
    monkeypatch.setenv("ASYNC_MAX_ATTEMPTS", "1")
    queue, _dlq = make_queue(aws)
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h-1/bar.jpg", Body=photo((0, 240, 0)))
    queue_async_result("model crashed", failure=True)
    handler.lambda_handler(lambda_event(receive(aws, queue)), FakeContext())
    [submission] = submitted(aws)

    # When a message that is no notification and the single attempt's failure notification arrive
    event = sqs_record("hello")
    event["Records"] += sqs_record(failure_notification(submission), "n-2")["Records"]
    # Then both fail (Powertools raises when every record of a batch failed: SQS retries them, then moves them
    # to the DLQ), and the exhausted inference is counted
    with pytest.raises(BatchProcessingError) as failure:
        async_handler.lambda_handler(event, FakeContext())
    assert len(failure.value.child_exceptions) == 2
    assert emitted_metrics(log_lines(capsys.readouterr().out))["AsyncInferencesFailed"] == 1
    item = aws.item("uploads/h-1/bar.jpg")
    assert item is not None and item["status"] == "PENDING" and item["pending_failed_at"]


def test_the_backfill_handler_submits_in_async_mode_and_reports_pending_counts(async_aws: Aws) -> None:
    aws = async_aws
    for index in range(3):
        aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/h-2/{index}.jpg", Body=photo((0, 0, 240)))
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h-2/bad.jpg", Body=b"\xff\xd8 truncated")
    event = {
        "Items": [{"Key": f"uploads/h-2/{name}.jpg"} for name in ("0", "1", "2", "bad")],
        "BatchInput": {"bucket": BUCKET},
    }
    summary = handler.backfill_handler(event, FakeContext())
    assert (summary["pending"], summary["rejected"], summary["labeled"]) == (3, 1, 0)
    # A re-run finds every photo in flight: nothing is submitted twice
    assert handler.backfill_handler(event, FakeContext())["skipped"] == 4


def test_a_wrong_endpoint_mode_or_missing_bucket_names_the_variable(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENDPOINT_MODE", "batch")
    with pytest.raises(ConfigError, match="ENDPOINT_MODE"):
        handler.get_labeller()
    handler.get_labeller.cache_clear()
    monkeypatch.setenv("ENDPOINT_MODE", "async")
    with pytest.raises(ConfigError, match="ASYNC_REQUEST_BUCKET"):
        handler.get_labeller()


def test_a_throttled_async_invoke_is_a_transient_fault(aws: Aws) -> None:
    class Throttled:
        def invoke_endpoint_async(self, **kwargs: Any) -> dict[str, Any]:
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "InvokeEndpointAsync"
            )

    with pytest.raises(TransientFault, match="ThrottlingException"):
        SageMakerAsyncEndpoint(
            Throttled(), ENDPOINT, request_ttl_seconds=60, invocation_timeout_seconds=60
        ).submit("s3://b/k", "id")
