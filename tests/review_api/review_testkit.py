"""Helpers for the review tests: items as the labeller writes them, Cognito tokens' claim sets as AWS documents
them, and HTTP API (payload v2) events as API Gateway's JWT authorizer passes them."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from PIL import Image

from review_api.local import gateway_claims

REGION = "us-east-1"
BUCKET = "hotel-photos"
TABLE = "photo-labels"
HISTORY_TABLE = "photo-review-history"
USER_POOL = "us-east-1_Ab12Cd34E"
CLIENT_ID = "4example2client8id6reviewpage"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{USER_POOL}"
# Users sign in by e-mail, so Cognito generates their usernames (UUIDs, as `sub`).
ANA_SUB = "7d1c4e0a-3b2f-4f6e-9a51-0c2d8e6f1a11"
BEN_SUB = "91aa2b7c-5d3e-4c1f-8b60-7e9f0a1b2c22"
LEA_SUB = "c3f0d9e8-7a6b-4c5d-9e4f-1a2b3c4d5e33"


def id_token_claims(
    email: str, sub: str, groups: list[str], *, issued_at: int = 1_796_119_200, lifetime: int = 3600
) -> dict[str, Any]:
    """An ID token's payload as Cognito issues it after a managed-login sign-in with the `email` scope
    (https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-id-token.html,
    "ID token default payload"): no `cognito:groups` claim when the user is in no group."""
    claims: dict[str, Any] = {
        "sub": sub,
        "email_verified": True,
        "iss": ISSUER,
        "cognito:username": sub,
        "origin_jti": f"origin-{sub[:8]}",
        "aud": CLIENT_ID,
        "event_id": f"event-{sub[:8]}",
        "token_use": "id",
        "auth_time": issued_at,
        "exp": issued_at + lifetime,
        "iat": issued_at,
        "jti": f"jti-{sub[:8]}",
        "email": email,
    }
    if groups:
        claims["cognito:groups"] = groups
    return claims


def access_token_claims(sub: str, groups: list[str], *, issued_at: int = 1_796_119_200) -> dict[str, Any]:
    """An access token's payload as Cognito issues it: `username` is the generated UUID, and there is no `email`
    (https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-access-token.html,
    "Access token default payload")."""
    return {
        "sub": sub,
        "cognito:groups": groups,
        "iss": ISSUER,
        "version": 2,
        "client_id": CLIENT_ID,
        "origin_jti": f"origin-{sub[:8]}",
        "event_id": f"event-{sub[:8]}",
        "token_use": "access",
        "scope": "openid profile email",
        "auth_time": issued_at,
        "exp": issued_at + 3600,
        "iat": issued_at,
        "jti": f"jti-{sub[:8]}",
        "username": sub,
    }


# As API Gateway passes them to the Lambda (every value a string, review_api.local.gateway_claims).
CLAIMS = gateway_claims(id_token_claims("ana@example.com", ANA_SUB, ["reviewers"]))
OTHER_CLAIMS = gateway_claims(id_token_claims("ben@example.com", BEN_SUB, ["reviewers"]))
LEAD_CLAIMS = gateway_claims(id_token_claims("lea@example.com", LEA_SUB, ["reviewers", "leads"]))
NO_GROUP_CLAIMS = gateway_claims(id_token_claims("new@example.com", "0f0f0f0f-1111-2222-3333-444455556666", []))
ACCESS_CLAIMS = gateway_claims(access_token_claims(ANA_SUB, ["reviewers"]))


def create_tables(dynamodb: Any) -> None:
    """The labels table and the review history table, as the stack defines them."""
    from local_aws.emulation import create_labels_table
    from stacks.review import history_table

    create_labels_table(dynamodb, TABLE)
    dynamodb.create_table(**history_table.create_table_kwargs(HISTORY_TABLE))


def history_of(dynamodb: Any, uri: str) -> list[dict[str, Any]]:
    """The history table's entries of a photo, oldest first, read directly."""
    items = dynamodb.query(
        TableName=HISTORY_TABLE,
        KeyConditionExpression="image_uri = :u",
        ExpressionAttributeValues={":u": {"S": uri}},
    )["Items"]
    return [{name: TypeDeserializer().deserialize(value) for name, value in item.items()} for item in items]


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
