"""Helpers for the review tests: items as the labeller writes them, and HTTP API (payload v2) events as API
Gateway's JWT authorizer passes them."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from PIL import Image

REGION = "us-east-1"
BUCKET = "hotel-photos"
TABLE = "photo-labels"
CLAIMS = {"sub": "7d1c-ana", "email": "ana@example.com", "cognito:username": "ana"}
OTHER_CLAIMS = {"sub": "91aa-ben", "email": "ben@example.com", "cognito:username": "ben"}


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def seed_photo(
    s3: Any,
    dynamodb: Any,
    key: str,
    *,
    label: str | None = "Room",
    confidence: float | None = 0.42,
    status: str = "NEEDS_REVIEW",
    classified_at: str = "2026-11-30T09:00:00.000+00:00",
    hotel_id: str | None = "h1",
    color: tuple[int, int, int] = (200, 80, 40),
    bucket: str = BUCKET,
    table: str = TABLE,
) -> dict[str, Any]:
    """Upload a photo to a versioned bucket and write the item the labeller would have written for it."""
    put = s3.put_object(Bucket=bucket, Key=key, Body=jpeg(color))
    item: dict[str, Any] = {
        "image_uri": f"s3://{bucket}/{key}",
        "status": status,
        "model": "llava-next-hotel-v1",
        "classified_at": classified_at,
        "etag": put["ETag"].strip('"'),
        "source_last_modified": "2026-11-30T08:59:59.000000Z",
    }
    if put.get("VersionId"):
        item["version_id"] = put["VersionId"]
    if label is not None:
        item["label"] = label
    if confidence is not None:
        item["confidence"] = confidence
        item["reason"] = f"confidence {confidence:.3f} is below 0.8"
    if hotel_id:
        item["hotel_id"] = hotel_id
    serializer = TypeSerializer()
    from decimal import Decimal

    dynamodb.put_item(
        TableName=table,
        Item={
            name: serializer.serialize(Decimal(str(value)) if isinstance(value, float) else value)
            for name, value in item.items()
        },
    )
    return item


def read_item(dynamodb: Any, uri: str, table: str = TABLE) -> dict[str, Any] | None:
    raw = dynamodb.get_item(TableName=table, Key={"image_uri": {"S": uri}}).get("Item")
    return {name: TypeDeserializer().deserialize(value) for name, value in raw.items()} if raw else None


def http_event(
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    body: Any = None,
    claims: dict[str, Any] | None = CLAIMS,
) -> dict[str, Any]:
    """An HTTP API payload v2 event; `claims=None` is a request that did not pass the JWT authorizer."""
    context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "abc123",
        "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1",
            "userAgent": "t",
        },
        "requestId": "req-1",
        "routeKey": f"{method} /api/{{proxy+}}",
        "stage": "$default",
        "time": "01/Dec/2026:10:00:00 +0000",
        "timeEpoch": 1796119200000,
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return {
        "version": "2.0",
        "routeKey": f"{method} /api/{{proxy+}}",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {"content-type": "application/json", "host": context["domainName"]},
        "queryStringParameters": query or None,
        "requestContext": context,
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


@dataclass
class FakeContext:
    function_name: str = "photo-review-api"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:photo-review-api"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@dataclass
class Account:
    s3: Any
    dynamodb: Any

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Invoke the Lambda handler as API Gateway would; (status code, parsed JSON body)."""
        from review_api import handler

        response = handler.lambda_handler(http_event(method, path, **kwargs), FakeContext())
        return response["statusCode"], json.loads(response["body"]) if response.get("body") else None
