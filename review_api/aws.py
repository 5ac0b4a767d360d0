"""Data access for the review API: the labels table's `by-status` index, leases and decisions on its items, the
append-only review history table, presigned photo URLs.

The only module of review_api that knows boto3's shapes; review_api/core.py speaks in plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from review_api.inputs import Expected, Filters

# stacks/storage/labels_table.BY_STATUS (not bundled with this Lambda); the review tests
# query a table built from it.
STATUS_INDEX = "by-status"
# stacks/review/history_table.py (likewise): partition image_uri, sort seq (N), one item per change.
HISTORY_SORT_KEY = "seq"
LEASE_ATTRIBUTES = ("lease_sub", "lease_by", "lease_until")

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo(value: Any) -> dict[str, Any]:
    # DynamoDB numbers must be Decimal; str() keeps the float's shortest repr. Maps drop their None values.
    if isinstance(value, float):
        value = Decimal(str(value))
    elif isinstance(value, Mapping):
        return {"M": {name: _to_dynamo(inner) for name, inner in value.items() if inner is not None}}
    return _serializer.serialize(value)


def _from_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def _condition_failed(error: ClientError) -> bool:
    """A conditional write refused: ConditionalCheckFailed, or a transaction cancelled by one (or by a concurrent
    transaction on the same item, TransactionConflict: the other writer changed what this one was based on)."""
    code = error.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
        return any(reason in ("ConditionalCheckFailed", "TransactionConflict") for reason in reasons)
    return False


class DynamoLabelTable:
    def __init__(self, client: Any, table_name: str, history_table_name: str) -> None:
        self._client = client
        self._table_name = table_name
        self._history_table_name = history_table_name

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
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, int]:
        params = self._query_params(status, since, until, filters)
        params |= {"Limit": limit, "ScanIndexForward": ascending}
        if start_key:
            params["ExclusiveStartKey"] = {name: {"S": value} for name, value in start_key.items()}
        response = self._client.query(**params)
        last = response.get("LastEvaluatedKey")
        items = [_from_dynamo(item) for item in response.get("Items", [])]
        return items, _from_dynamo(last) if last else None, int(response.get("ScannedCount", len(items)))

    def count_status_page(
        self,
        status: str,
        *,
        since: str | None,
        until: str | None,
        filters: Filters,
        start_key: Mapping[str, Any] | None,
        limit: int | None = None,
    ) -> tuple[int, dict[str, Any] | None]:
        params = self._query_params(status, since, until, filters) | {"Select": "COUNT"}
        if limit is not None:
            params["Limit"] = limit
        if start_key:
            params["ExclusiveStartKey"] = {name: {"S": value} for name, value in start_key.items()}
        response = self._client.query(**params)
        last = response.get("LastEvaluatedKey")
        return int(response.get("Count", 0)), _from_dynamo(last) if last else None

    def get(self, image_uri: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._table_name, Key={"image_uri": {"S": image_uri}}, ConsistentRead=True
        )
        item = response.get("Item")
        return _from_dynamo(item) if item else None

    @staticmethod
    def _state_condition(expected: Expected, names: dict[str, str], values: dict[str, Any]) -> list[str]:
        """The item is still in the state the reviewer was shown (status, model result, decision)."""
        names |= {"#cstatus": "status", "#cclassified": "classified_at", "#creviewed": "reviewed_at"}
        values |= {":cstatus": {"S": expected.status}, ":cclassified": {"S": expected.classified_at}}
        conditions = ["attribute_exists(image_uri)", "#cstatus = :cstatus", "#cclassified = :cclassified"]
        if expected.reviewed_at is None:
            conditions.append("attribute_not_exists(#creviewed)")
        else:
            conditions.append("#creviewed = :creviewed")
            values[":creviewed"] = {"S": expected.reviewed_at}
        return conditions

    @staticmethod
    def _lease_condition(sub: str, now: str, names: dict[str, str], values: dict[str, Any]) -> str:
        """Nobody else holds the photo: no lease, this reviewer's own, or an expired one."""
        names |= {"#lsub": "lease_sub", "#luntil": "lease_until"}
        values |= {":me": {"S": sub}, ":now": {"S": now}}
        return "(attribute_not_exists(#lsub) OR #lsub = :me OR #luntil < :now)"

    def claim(
        self, image_uri: str, *, expected: Expected, sub: str, name: str, until: str, now: str
    ) -> dict[str, Any] | None:
        names: dict[str, str] = {"#set_sub": "lease_sub", "#set_by": "lease_by", "#set_until": "lease_until"}
        values: dict[str, Any] = {":set_sub": {"S": sub}, ":set_by": {"S": name}, ":set_until": {"S": until}}
        conditions = self._state_condition(expected, names, values)
        conditions.append(self._lease_condition(sub, now, names, values))
        try:
            response = self._client.update_item(
                TableName=self._table_name,
                Key={"image_uri": {"S": image_uri}},
                UpdateExpression="SET #set_sub = :set_sub, #set_by = :set_by, #set_until = :set_until",
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _condition_failed(error):
                return None
            raise
        return _from_dynamo(response["Attributes"])

    def release(self, image_uri: str, *, sub: str) -> bool:
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key={"image_uri": {"S": image_uri}},
                UpdateExpression="REMOVE " + ", ".join(LEASE_ATTRIBUTES),
                ConditionExpression="attribute_exists(image_uri) AND lease_sub = :me",
                ExpressionAttributeValues={":me": {"S": sub}},
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def write(
        self,
        image_uri: str,
        *,
        values: Mapping[str, Any],
        remove: Sequence[str],
        keep_first: Sequence[str],
        expected: Expected,
        sub: str,
        now: str,
        entry: Mapping[str, Any],
    ) -> bool:
        """One transaction: the photo's item changes (if still as shown and nobody else holds it) and the history
        gains `entry` (if its seq is new). False when either condition failed."""
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
        conditions = self._state_condition(expected, names, placeholders)
        conditions.append(self._lease_condition(sub, now, names, placeholders))
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table_name,
                            "Key": {"image_uri": {"S": image_uri}},
                            "UpdateExpression": expression,
                            "ConditionExpression": " AND ".join(conditions),
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": placeholders,
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._history_table_name,
                            "Item": {
                                name: _to_dynamo(value) for name, value in entry.items() if value is not None
                            },
                            # Append-only: an entry is never replaced (the role has no UpdateItem/DeleteItem here).
                            "ConditionExpression": "attribute_not_exists(image_uri)",
                        }
                    },
                ]
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def history(self, image_uri: str, *, newest_first: bool, limit: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "TableName": self._history_table_name,
            "KeyConditionExpression": "image_uri = :uri",
            "ExpressionAttributeValues": {":uri": {"S": image_uri}},
            "ScanIndexForward": not newest_first,
            "ConsistentRead": True,
        }
        if limit is not None:
            params["Limit"] = limit
        entries: list[dict[str, Any]] = []
        while True:
            response = self._client.query(**params)
            entries += [plain(_from_dynamo(item)) for item in response.get("Items", [])]
            last = response.get("LastEvaluatedKey")
            if not last or (limit is not None and len(entries) >= limit):
                return entries
            params["ExclusiveStartKey"] = last


def plain(value: Any) -> Any:
    """Decimal -> int/float, inside maps too (history entries hold numbers and a `replaced` map)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {name: plain(inner) for name, inner in value.items()}
    if isinstance(value, list):
        return [plain(inner) for inner in value]
    return value


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


__all__ = ["HISTORY_SORT_KEY", "LEASE_ATTRIBUTES", "STATUS_INDEX", "DynamoLabelTable", "S3PhotoStore"]
