"""The labels table's keys and indexes (docs/interfaces.md), as plain data.

One definition for every place that builds the table: stacks/storage/photo_store.py turns it into the CDK table,
the local AWS kit (local_aws/) into moto's `create_table` arguments. No aws_cdk import, so the kit and the tests
read it without starting jsii. Every key attribute is a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TableIndex:
    """A global secondary index projecting all attributes."""

    name: str
    partition_key: str
    sort_key: str


PARTITION_KEY = "image_uri"  # s3://bucket/key: one item per photo
# "All Pool photos of hotel X" (tools, reports).
BY_HOTEL = TableIndex(name="by-hotel", partition_key="hotel_id", sort_key="label")
# "All photos with status NEEDS_REVIEW, oldest first" (the review API's queue, tools/review_export.py).
BY_STATUS = TableIndex(name="by-status", partition_key="status", sort_key="classified_at")
INDEXES: tuple[TableIndex, ...] = (BY_HOTEL, BY_STATUS)


def key_attributes() -> tuple[str, ...]:
    """Every attribute a key of the table or of an index uses, in the order they are first named."""
    names = [PARTITION_KEY]
    for index in INDEXES:
        names += [name for name in (index.partition_key, index.sort_key) if name not in names]
    return tuple(names)


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    """boto3's `dynamodb.create_table(**...)` arguments for this table (on-demand, as the stack's)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in key_attributes()],
        "KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index in INDEXES
        ],
    }


__all__ = [
    "BY_HOTEL",
    "BY_STATUS",
    "INDEXES",
    "PARTITION_KEY",
    "TableIndex",
    "create_table_kwargs",
    "key_attributes",
]
