"""Helpers for the handler tests: an SQS queue fed by the bucket, Lambda's SQS event, the logs and metrics."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import handler
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from labeller_aws import DynamoLabelStore, S3ObjectStore, SageMakerEndpoint
from labeller_core import Labeller, StoredObject
from labeller_testkit import BUCKET, ENDPOINT, REGION, TABLE, Aws, FakeContext, labeller_config

from local_aws.lambda_runner import sqs_event


def make_queue(aws: Aws, name: str = "uploads", max_receive: int = 20) -> tuple[str, str]:
    """A queue with a DLQ, subscribed to the bucket's ObjectCreated events under uploads/ (as the stack does)."""
    dlq = aws.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = aws.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = aws.sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}),
        },
    )["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
                }
            ]
        },
    )
    return queue, dlq


def receive(aws: Aws, queue: str) -> list[dict[str, Any]]:
    return aws.sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
    ).get("Messages", [])


def lambda_event(messages: list[dict[str, Any]], queue_arn: str = "arn:aws:sqs:us-east-1:1:uploads") -> dict:
    """What the SQS event source mapping hands the function for these messages."""
    return sqs_event(messages, queue_arn=queue_arn, region=REGION)


def run_batch(messages: list[dict[str, Any]]) -> set[str]:
    """Invoke the handler; the ids of the messages it reports failed (all of them if the whole batch failed)."""
    try:
        response = handler.lambda_handler(lambda_event(messages), FakeContext())
    except BatchProcessingError:
        return {message["MessageId"] for message in messages}
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}


def drain(aws: Aws, queue: str, *, max_rounds: int = 200) -> int:
    """Play the event source mapping: deliver, delete what succeeded, make failures visible again."""
    rounds = 0
    while rounds < max_rounds:
        messages = receive(aws, queue)
        if not messages:
            return rounds
        rounds += 1
        failed = run_batch(messages)
        for message in messages:
            if message["MessageId"] in failed:
                aws.sqs.change_message_visibility(
                    QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                aws.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError(f"queue not drained after {max_rounds} rounds")


def log_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines


def emitted_metrics(lines: list[dict[str, Any]]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for line in lines:
        for directive in line.get("_aws", {}).get("CloudWatchMetrics", []):
            for metric in directive["Metrics"]:
                value = line[metric["Name"]]
                totals[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return totals


class CountingObjects(S3ObjectStore):
    """The real S3 data access, counting downloads (GetObject calls)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.downloads = 0

    def get(self, bucket: str, key: str, *, if_match: str | None, max_bytes: int) -> StoredObject:
        self.downloads += 1
        return super().get(bucket, key, if_match=if_match, max_bytes=max_bytes)


def use_labeller(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, *, model_id: Callable[[], str] | None = None
) -> CountingObjects:
    """Serve the handler a labeller on moto whose downloads are counted (and whose model source is given)."""
    objects = CountingObjects(aws.s3)
    labeller = Labeller(
        labeller_config(os.environ),
        objects=objects,
        endpoint=SageMakerEndpoint(boto3.client("sagemaker-runtime", region_name=REGION), ENDPOINT),
        labels=DynamoLabelStore(aws.dynamodb, TABLE),
        model_id=model_id,
    )
    monkeypatch.setattr(handler, "get_labeller", lambda **_: labeller)
    return objects


def warnings_logged() -> list[str]:
    lines = log_lines(handler.logger.registered_handler.stream.getvalue())
    return [line["message"] for line in lines if line.get("level") == "WARNING"]
