"""The review history table's keys, as plain data (docs/interfaces.md, "Review history table").

One item per change to a photo's decision (decide, override, undo; review_api/decisions.py), appended and never
rewritten: the review API's role may only PutItem (conditional on a new key) and Query here. stacks/review/page.py
builds the deployed table from this, review_api/local.py and the tests build moto's. No aws_cdk import.
"""

from __future__ import annotations

from typing import Any

PARTITION_KEY = "image_uri"  # s3://bucket/key, as in the labels table
SORT_KEY = "seq"  # 1, 2, ... per photo (a number)


def table_name(name_prefix: str) -> str:
    return f"{name_prefix}-review-history"


def create_table_kwargs(name: str) -> dict[str, Any]:
    """boto3's `dynamodb.create_table(**...)` arguments for this table (on-demand, as the stack's)."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": SORT_KEY, "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
    }


__all__ = ["PARTITION_KEY", "SORT_KEY", "create_table_kwargs", "table_name"]
