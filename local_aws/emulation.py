"""moto's server with the stack's resources: versioned image bucket, upload queue + DLQ, labels table, S3 events.

The table comes from stacks/storage/labels_table.py, the definition stacks/storage/photo_store.py builds
the deployed table from.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stacks.storage import labels_table

if TYPE_CHECKING:
    from stacks.config import AppConfig

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "demo", "aws_secret_access_key": "demo"}
# A retried message comes back after this many seconds (the deployed queue waits 6x the function timeout).
VISIBILITY_TIMEOUT = 2  # seconds


def create_labels_table(dynamodb: Any, table_name: str) -> None:
    """The labels table as the stack defines it, on any DynamoDB client (moto's server or `mock_aws`)."""
    dynamodb.create_table(**labels_table.create_table_kwargs(table_name))


@dataclass(frozen=True)
class AsyncParts:
    """What stacks/serving/async_inference.py adds: the request/response bucket and the
    notification queue (+ DLQ)."""

    bucket: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str


@dataclass
class LocalAws:
    """moto's server with the stack's bucket, queue (+ DLQ), table and notification; a context manager."""

    bucket: str
    table: str
    queue_name: str
    upload_prefix: str
    max_receive_count: int
    endpoint_url: str = ""
    queue_url: str = ""
    dead_letter_queue_url: str = ""
    queue_arn: str = ""
    s3: Any = None
    sqs: Any = None
    dynamodb: Any = None
    _server: Any = None

    @classmethod
    def for_app(cls, config: AppConfig) -> LocalAws:
        """The deployed names, upload prefix and redrive count of `config` (not yet started)."""
        return cls(
            bucket=f"{config.name_prefix}-images",
            table=f"{config.name_prefix}-labels",
            queue_name=f"{config.name_prefix}-uploads",
            upload_prefix=config.storage.upload_prefix,
            max_receive_count=config.upload.max_receive_count,
        )

    def __enter__(self) -> LocalAws:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per AWS call otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        try:
            host, port = self._server.get_host_and_port()
            self.endpoint_url = f"http://{host}:{port}"
            self._create()
        except BaseException:
            self._server.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            # moto keeps its backends per process, not per server: forget this emulation's bucket, queues and table
            # so a second run in the same process (the tests run both endpoint modes) starts from nothing.
            urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"))
            self._server.stop()
            self._server = None

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url, **CREDENTIALS)

    def _create(self) -> None:
        self.s3, self.sqs, self.dynamodb = self.client("s3"), self.client("sqs"), self.client("dynamodb")
        self.s3.create_bucket(Bucket=self.bucket)
        # Versioned like the stack's bucket: notifications then carry a versionId, as in production.
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        self.queue_url, self.dead_letter_queue_url = self._create_queue_with_dlq(
            self.queue_name, self.max_receive_count
        )
        self.queue_arn = self.queue_arn_of(self.queue_url)
        self.s3.put_bucket_notification_configuration(
            Bucket=self.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": self.queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": self.upload_prefix}]}},
                    }
                ]
            },
        )
        create_labels_table(self.dynamodb, self.table)

    def _create_queue_with_dlq(self, name: str, max_receive_count: int) -> tuple[str, str]:
        """(queue URL, DLQ URL): the queue dead-letters a message after `max_receive_count` receives."""
        dlq = self.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        redrive = {"deadLetterTargetArn": self.queue_arn_of(dlq), "maxReceiveCount": str(max_receive_count)}
        queue = self.sqs.create_queue(
            QueueName=name,
            Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT), "RedrivePolicy": json.dumps(redrive)},
        )["QueueUrl"]
        return queue, dlq

    def add_async_parts(self, name_prefix: str, max_receive_count: int) -> AsyncParts:
        """The async endpoint's request bucket and notification queue (+ DLQ), named as the stack names them."""
        bucket = f"{name_prefix}-async"
        self.s3.create_bucket(Bucket=bucket)
        queue, dlq = self._create_queue_with_dlq(f"{name_prefix}-async-notifications", max_receive_count)
        return AsyncParts(bucket, queue, self.queue_arn_of(queue), dlq)

    def queue_arn_of(self, queue_url: str) -> str:
        attributes = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return attributes["Attributes"]["QueueArn"]

    def queue_depth(self, queue_url: str | None = None) -> int:
        """Visible plus in-flight messages."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def items(self) -> list[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        items = []
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True):
            items += [{k: deserializer.deserialize(v) for k, v in item.items()} for item in page["Items"]]
        return sorted(items, key=lambda item: item[labels_table.PARTITION_KEY])

    def query_count(self, index: labels_table.TableIndex, value: str) -> int:
        """How many items `index` holds under partition key `value`."""
        response = self.dynamodb.query(
            TableName=self.table,
            IndexName=index.name,
            KeyConditionExpression="#k = :v",
            ExpressionAttributeNames={"#k": index.partition_key},
            ExpressionAttributeValues={":v": {"S": value}},
            Select="COUNT",
        )
        return int(response["Count"])


__all__ = ["CREDENTIALS", "REGION", "VISIBILITY_TIMEOUT", "AsyncParts", "LocalAws", "create_labels_table"]
