"""Data access for a scheduled window's steps (window_core.py's seams): the by-status index and the work bucket."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from window_core import PENDING

# The labels table's status index (stacks/storage/labels_table.py BY_STATUS;
# tests/lambda/test_window.py holds the copy).
STATUS_INDEX = "by-status"
PAGE_SIZE = 1000  # items per Query page: PENDING items are small (< 1 KB), well under Query's 1 MB page


class DynamoPendingIndex:
    def __init__(self, client: Any, table_name: str, *, page_size: int = PAGE_SIZE) -> None:
        self._client = client
        self._table_name = table_name
        self._page_size = page_size
        self._deserializer = TypeDeserializer()

    def pages(self) -> Iterator[list[Mapping[str, Any]]]:
        params: dict[str, Any] = {
            "TableName": self._table_name,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#status = :pending",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":pending": {"S": PENDING}},
            "ScanIndexForward": True,  # oldest classified_at first
            "Limit": self._page_size,
        }
        while True:
            response = self._client.query(**params)
            yield [
                {name: self._deserializer.deserialize(value) for name, value in item.items()}
                for item in response.get("Items", [])
            ]
            if "LastEvaluatedKey" not in response:
                return
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]


class S3WorkStore:
    """The work bucket (SSE-KMS by its default encryption)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def put_text(self, key: str, text: str) -> None:
        self._client.put_object(
            Bucket=self._bucket, Key=key, Body=text.encode(), ContentType="application/x-ndjson"
        )

    def read_texts(self, prefix: str) -> list[str]:
        texts = []
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                if entry["Key"].endswith(".json"):  # not a `.partial` file the sync caught mid-write
                    body = self._client.get_object(Bucket=self._bucket, Key=entry["Key"])["Body"]
                    texts.append(body.read().decode())
        return texts
