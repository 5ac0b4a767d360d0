"""Helpers for the async-mode tests: the request bucket, a scripted async endpoint, SageMaker's notifications."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from async_aws import DynamoPendingStore, S3RequestStore
from async_core import AsyncSettings, AsyncSubmitter, LabelWriter
from labeller_aws import S3ObjectStore
from labeller_core import LabellerConfig, ProfileLookup, TransientFault
from labeller_testkit import MODEL_ID, REGION, TABLE

from classification.contract import Taxonomy

ASYNC_BUCKET = "photo-labeler-async"
REQUEST_PREFIX = "requests/"
OUTPUT_PREFIX = "responses/"


@dataclass
class Clock:
    """A settable clock: claims, leases and staleness are tested without sleeping."""

    now: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Submission:
    input_location: str
    inference_id: str


class ScriptedAsyncEndpoint:
    """Records InvokeEndpointAsync calls; `fail_next` makes the next one raise as the adapter would."""

    def __init__(self) -> None:
        self.submissions: list[Submission] = []
        self.fail_next = 0

    def submit(self, input_location: str, inference_id: str) -> str:
        if self.fail_next:
            self.fail_next -= 1
            raise TransientFault("InvokeEndpointAsync failed: ServiceUnavailable (HTTP 503)")
        self.submissions.append(Submission(input_location, inference_id))
        return f"s3://{ASYNC_BUCKET}/{OUTPUT_PREFIX}{inference_id}.out"


def create_async_bucket() -> Any:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=ASYNC_BUCKET)
    return s3


def config(threshold: float = 0.6) -> LabellerConfig:
    return LabellerConfig(model_id=MODEL_ID, taxonomy=Taxonomy.load(), confidence_threshold=threshold)


def parts(
    endpoint: ScriptedAsyncEndpoint,
    clock: Clock,
    *,
    model: str = MODEL_ID,
    max_attempts: int = 3,
    profiles: ProfileLookup | None = None,
) -> tuple[AsyncSubmitter, LabelWriter]:
    """A submitter and a label writer on moto's S3/DynamoDB, sharing the scripted endpoint and the clock (and the
    model profile lookup, when given)."""
    s3 = boto3.client("s3", region_name=REGION)
    labels = DynamoPendingStore(boto3.client("dynamodb", region_name=REGION), TABLE)
    requests = S3RequestStore(s3, ASYNC_BUCKET, REQUEST_PREFIX)
    settings = AsyncSettings(max_attempts=max_attempts)
    submitter = AsyncSubmitter(
        config(),
        objects=S3ObjectStore(s3),
        labels=labels,
        requests=requests,
        endpoint=endpoint,
        settings=settings,
        clock=clock,
        model_id=lambda: model,
        profiles=profiles,
    )
    writer = LabelWriter(
        config(),
        labels=labels,
        requests=requests,
        endpoint=endpoint,
        settings=settings,
        clock=clock,
        profiles=profiles,
    )
    return submitter, writer


def answer_inference(s3: Any, submission: Submission, body: dict[str, Any] | str) -> str:
    """Play the endpoint: write the response where SageMaker would; return the success notification."""
    key = f"{OUTPUT_PREFIX}{uuid.uuid4()}.out"  # SageMaker names each response anew
    s3.put_object(Bucket=ASYNC_BUCKET, Key=key, Body=body if isinstance(body, str) else json.dumps(body))
    return success_notification(submission, f"s3://{ASYNC_BUCKET}/{key}")


def success_notification(submission: Submission, output_location: str, *, envelope: bool = False) -> str:
    message = {
        "awsRegion": REGION,
        "eventTime": "2026-12-01T12:00:03.500Z",
        "receivedTime": "2026-12-01T12:00:01.000Z",
        "invocationStatus": "Completed",
        "requestParameters": {
            "contentType": "application/json",
            "endpointName": "photo-labeler-llava",
            "inputLocation": submission.input_location,
        },
        "responseParameters": {"contentType": "application/json", "outputLocation": output_location},
        "inferenceId": submission.inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    return _wrap(message, envelope)


def failure_notification(submission: Submission, reason: str = "ClientError: Received server error (500)") -> str:
    message = {
        "awsRegion": REGION,
        "eventTime": "2026-12-01T12:00:03.500Z",
        "receivedTime": "2026-12-01T12:00:01.000Z",
        "invocationStatus": "Failed",
        "failureReason": reason,
        "requestParameters": {"endpointName": "photo-labeler-llava", "inputLocation": submission.input_location},
        "responseParameters": {
            "contentType": "application/json",
            "failureLocation": f"s3://{ASYNC_BUCKET}/failures/{submission.inference_id}-error.out",
        },
        "inferenceId": submission.inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    return _wrap(message, False)


def _wrap(message: dict[str, Any], envelope: bool) -> str:
    if not envelope:
        return json.dumps(message)
    return json.dumps({"Type": "Notification", "MessageId": "m-1", "Message": json.dumps(message)})
