"""Data access for the review API: the labels table's `by-status` index and item updates, presigned photo URLs.

The only module of review_api that knows boto3's shapes; review_api/core.py speaks in plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from review_api.inputs import Expected, Filters

# stacks/labels_table.BY_STATUS (not bundled with this Lambda); the review tests query a table built from it.
STATUS_INDEX = "by-status"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo(value: Any) -> dict[str, Any]:
    # DynamoDB numbers must be Decimal; str() keeps the float's shortest repr.
    return _serializer.serialize(Decimal(str(value)) if isinstance(value, float) else value)


def _from_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


class DynamoLabelTable:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table_name = table_name

    def _query_params(self, status: str, since: str | None, until: str | None, filters: Filters) -> dict[str, Any]:
        names = {"#status": "status"}
        values: dict[str, Any] = {":status": {"S": status}}
        key = "#status = :status"
        if since and until:
            key += " AND classified_at BETWEEN :since AND :until"
            values |= {":since": {"S": since}, ":until": {"S": until}}
        elif since:
            key += " AND classified_at >= :since"
            values[":since"] = {"S": since}
        elif until:
            key += " AND classified_at <= :until"
            values[":until"] = {"S": until}
        conditions = []
        if filters.hotel_id:
            conditions.append("hotel_id = :hotel")
            values[":hotel"] = {"S": filters.hotel_id}
        if filters.label:
            names["#label"] = "label"
            conditions.append("#label = :label")
            values[":label"] = {"S": filters.label}
        if filters.min_confidence is not None:
            conditions.append("confidence >= :low")
            values[":low"] = _to_dynamo(filters.min_confidence)
        if filters.max_confidence is not None:
            conditions.append("confidence <= :high")
            values[":high"] = _to_dynamo(filters.max_confidence)
        params: dict[str, Any] = {
            "TableName": self._table_name,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": key,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if conditions:
            params["FilterExpression"] = " AND ".join(conditions)
        return params

    def query_status(
        self,
        status: str,
        *,
        since: str | None,
        until: str | None,
        filters: Filters,
        limit: int,
        start_key: Mapping[str, Any] | None,
        ascending: bool,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        params = self._query_params(status, since, until, filters)
        params |= {"Limit": limit, "ScanIndexForward": ascending}
        if start_key:
            params["ExclusiveStartKey"] = {name: {"S": value} for name, value in start_key.items()}
        response = self._client.query(**params)
        last = response.get("LastEvaluatedKey")
        return [_from_dynamo(item) for item in response.get("Items", [])], _from_dynamo(last) if last else None

    def count_status(
        self, status: str, *, since: str | None, until: str | None, filters: Filters, max_calls: int
    ) -> tuple[int, bool]:
        params = self._query_params(status, since, until, filters) | {"Select": "COUNT"}
        count = 0
        for _ in range(max_calls):
            response = self._client.query(**params)
            count += int(response.get("Count", 0))
            last = response.get("LastEvaluatedKey")
            if not last:
                return count, True
            params["ExclusiveStartKey"] = last
        return count, False

    def get(self, image_uri: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._table_name, Key={"image_uri": {"S": image_uri}}, ConsistentRead=True
        )
        item = response.get("Item")
        return _from_dynamo(item) if item else None

    def update(
        self,
        image_uri: str,
        *,
        values: Mapping[str, Any],
        remove: Sequence[str],
        expected: Expected | None = None,
        expected_reviewer_sub: str | None = None,
        keep_first: Sequence[str] = (),
    ) -> dict[str, Any] | None:
        names: dict[str, str] = {}
        placeholders: dict[str, Any] = {}
        sets = []
        for position, (name, value) in enumerate(values.items()):
            names[f"#s{position}"] = name
            placeholders[f":s{position}"] = _to_dynamo(value)
            if name in keep_first:
                sets.append(f"#s{position} = if_not_exists(#s{position}, :s{position})")
            else:
                sets.append(f"#s{position} = :s{position}")
        removes = []
        for position, name in enumerate(remove):
            names[f"#r{position}"] = name
            removes.append(f"#r{position}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        conditions = ["attribute_exists(image_uri)"]
        if expected is not None:
            names |= {"#cstatus": "status", "#cclassified": "classified_at", "#creviewed": "reviewed_at"}
            placeholders |= {":cstatus": {"S": expected.status}, ":cclassified": {"S": expected.classified_at}}
            conditions += ["#cstatus = :cstatus", "#cclassified = :cclassified"]
            if expected.reviewed_at is None:
                conditions.append("attribute_not_exists(#creviewed)")
            else:
                conditions.append("#creviewed = :creviewed")
                placeholders[":creviewed"] = {"S": expected.reviewed_at}
        if expected_reviewer_sub is not None:
            names["#csub"] = "reviewed_by_sub"
            placeholders[":csub"] = {"S": expected_reviewer_sub}
            conditions.append("#csub = :csub")
        try:
            response = self._client.update_item(
                TableName=self._table_name,
                Key={"image_uri": {"S": image_uri}},
                UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=placeholders,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        return _from_dynamo(response["Attributes"])


class S3PhotoStore:
    def __init__(self, client: Any) -> None:
        self._client = client

    def presign(self, bucket: str, key: str, version_id: str | None, expires_in: int) -> str:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            # The exact version that was labelled: a replaced photo never shows under the old label.
            params["VersionId"] = version_id
        return self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    def exists(self, bucket: str, key: str, version_id: str | None) -> bool:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        try:
            self._client.head_object(**params)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchVersion", "400"):
                # A deleted version answers 404; a version id S3 never issued (a deleted one) may answer 400.
                return False
            raise
        return True


__all__ = ["STATUS_INDEX", "DynamoLabelTable", "S3PhotoStore"]
