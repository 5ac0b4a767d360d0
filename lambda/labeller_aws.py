"""Data access for the labeller: S3, the endpoint, the labels table and the model registry (labeller_core's seams).

This is the only module that knows botocore's error shapes; it turns them into the core's vocabulary
(ObjectMissing, ObjectSuperseded, TransientFault, "not written").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from labeller_core import (
    HUMAN_DECISION_ATTRIBUTE,
    ObjectMissing,
    ObjectSuperseded,
    StoredObject,
    TransientFault,
)
from labeller_inputs import clean_etag

from classification.model_profile import InvalidProfile, ModelProfile, resolve_profile

# SageMaker real-time invocations end at 60 s server-side; waiting longer only holds the Lambda. Two attempts
# absorb a brief throttle in-process (cheaper than an SQS redelivery after the visibility timeout), and bound one
# record's worst case to ~2 x 65 s. Everything else is retried by SQS.
ENDPOINT_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=60, retries={"mode": "standard", "total_max_attempts": 2}
)
# The registry read sits in front of every photo: fail fast and let SQS (or the map's Retry) try the record again
# rather than hold the invocation. SSM's standard-throughput quota is shared by the account (40 TPS by default);
# one read per execution environment per MODEL_PARAMETER_MAX_AGE_SECONDS stays far below it.
SSM_CLIENT_CONFIG = Config(
    connect_timeout=3, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3}
)
# How stale the model id may be after the training pipeline registers a new model.
MODEL_PARAMETER_MAX_AGE_SECONDS = 60.0
# A missing key answers 404 only when the role may list the bucket; without s3:ListBucket S3 answers 403, which is
# treated as transient (message ends in the DLQ) rather than silently recorded as MISSING.
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_SUPERSEDED_CODES = frozenset({"PreconditionFailed", "412"})


def _error_text(error: Exception) -> str:
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{info.get('Code', 'Unknown')} (HTTP {status}): {info.get('Message', '')}"[:500]
    return f"{type(error).__name__}: {error}"[:500]


class S3ObjectStore:
    def __init__(self, client: Any) -> None:
        self._client = client

    def get(self, bucket: str, key: str, *, if_match: str | None, max_bytes: int) -> StoredObject:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if if_match:
            params["IfMatch"] = f'"{if_match}"'
        try:
            response = self._client.get_object(**params)
        except (ClientError, BotoCoreError) as error:
            raise _read_fault(error, key, "GetObject") from error
        size = int(response.get("ContentLength", 0))
        stream = response["Body"]
        try:
            body = stream.read() if size <= max_bytes else None
        except (BotoCoreError, OSError) as error:
            raise TransientFault(f"S3 read of {key} failed: {_error_text(error)}") from error
        finally:
            stream.close()
        return _stored(response, body)

    def head(self, bucket: str, key: str, *, if_match: str | None) -> StoredObject:
        """The version's metadata without its bytes (body None): HeadObject, which s3:GetObject covers."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if if_match:
            params["IfMatch"] = f'"{if_match}"'
        try:
            response = self._client.head_object(**params)
        except (ClientError, BotoCoreError) as error:
            raise _read_fault(error, key, "HeadObject") from error
        return _stored(response, None)


def _read_fault(error: Exception, key: str, operation: str) -> Exception:
    """The core's name for a failed read. HEAD answers carry no body, so their code is the bare HTTP status
    ("404", "412"), which the code sets include."""
    code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
    if code in _MISSING_CODES:
        return ObjectMissing(key)
    if code in _SUPERSEDED_CODES:
        return ObjectSuperseded(key)
    return TransientFault(f"S3 {operation} failed: {_error_text(error)}")


def _stored(response: Mapping[str, Any], body: bytes | None) -> StoredObject:
    return StoredObject(
        body=body,
        size=int(response.get("ContentLength", 0)),
        etag=clean_etag(response.get("ETag")) or "",
        version_id=response.get("VersionId") if response.get("VersionId") not in (None, "null") else None,
        last_modified=response["LastModified"],
    )


class SageMakerEndpoint:
    def __init__(self, client: Any, endpoint_name: str) -> None:
        self._client = client
        self._endpoint_name = endpoint_name

    def invoke(self, body: bytes) -> bytes:
        try:
            response = self._client.invoke_endpoint(
                EndpointName=self._endpoint_name,
                ContentType="application/json",
                Accept="application/json",
                Body=body,
            )
            return response["Body"].read()
        except (ClientError, BotoCoreError) as error:
            # Throttling, ModelNotReady, 5xx, ModelError and timeouts are all retried; a permanent
            # misconfiguration (endpoint gone) therefore ends in the DLQ, where the alarm surfaces it.
            raise TransientFault(f"InvokeEndpoint failed: {_error_text(error)}") from error


# The newest version wins; the same version is rewritten only while it lacks a final result or when another
# model produced it (reclassify). See labeller_core's docstring for the reasoning.
# Never over a reviewer's decision (labeller_core.HUMAN_DECISION_ATTRIBUTE), whatever the version or model.
RESULT_CONDITION = (
    f"attribute_not_exists({HUMAN_DECISION_ATTRIBUTE}) AND ("
    "attribute_not_exists(image_uri) OR attribute_not_exists(source_last_modified)"
    " OR source_last_modified < :lm"
    " OR (source_last_modified = :lm AND etag <> :etag)"
    " OR (source_last_modified = :lm AND etag = :etag AND (NOT #status IN ({finals}) OR model <> :model)))"
)
# endpoint.mode scheduled (scheduled_core.py): a PENDING item replaces an older version's item, never the same
# version's PENDING or result, except (reclassify) a result another model produced; never a reviewer's decision.
PENDING_CONDITION = (
    f"attribute_not_exists({HUMAN_DECISION_ATTRIBUTE}) AND ("
    "attribute_not_exists(image_uri) OR attribute_not_exists(source_last_modified)"
    " OR source_last_modified < :lm"
    " OR (source_last_modified = :lm AND etag <> :etag){reclassify})"
)
PENDING_RECLASSIFY_CLAUSE = (
    " OR (source_last_modified = :lm AND etag = :etag AND #status IN ({statuses}) AND model <> :model)"
)
# A PENDING photo a window found deleted gets its terminal MISSING (scheduled_core.WindowLabeller).
MISSING_OVER_PENDING_CONDITION = (
    f"attribute_not_exists(image_uri) OR (attribute_not_exists({HUMAN_DECISION_ATTRIBUTE})"
    " AND #status = :pending AND etag = :etag)"
)


class DynamoLabelStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table_name = table_name
        self._serializer = TypeSerializer()
        self._deserializer = TypeDeserializer()

    def get(self, image_uri: str) -> Mapping[str, Any] | None:
        try:
            response = self._client.get_item(
                TableName=self._table_name, Key={"image_uri": {"S": image_uri}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as error:
            raise TransientFault(f"DynamoDB GetItem failed: {_error_text(error)}") from error
        item = response.get("Item")
        return {k: self._deserializer.deserialize(v) for k, v in item.items()} if item else None

    def put_result(self, item: Mapping[str, Any], *, final_statuses: tuple[str, ...]) -> bool:
        placeholders = {f":final{i}": {"S": status} for i, status in enumerate(final_statuses)}
        values = {
            ":lm": {"S": item["source_last_modified"]},
            ":etag": {"S": item["etag"]},
            ":model": {"S": item["model"]},
            **placeholders,
        }
        condition = RESULT_CONDITION.format(finals=", ".join(placeholders))
        return self._put(item, condition, values, names={"#status": "status"})

    def put_pending(self, item: Mapping[str, Any], *, replace_statuses: tuple[str, ...] = ()) -> bool:
        values: dict[str, Any] = {":lm": {"S": item["source_last_modified"]}, ":etag": {"S": item["etag"]}}
        names: dict[str, str] | None = None
        reclassify = ""
        if replace_statuses:
            placeholders = {f":replace{i}": {"S": status} for i, status in enumerate(replace_statuses)}
            values.update(placeholders)
            values[":model"] = {"S": item["model"]}
            names = {"#status": "status"}
            reclassify = PENDING_RECLASSIFY_CLAUSE.format(statuses=", ".join(placeholders))
        return self._put(item, PENDING_CONDITION.format(reclassify=reclassify), values, names=names)

    def put_missing(self, item: Mapping[str, Any], *, replace_pending: bool = False) -> bool:
        if replace_pending and item.get("etag"):
            values = {":pending": {"S": "PENDING"}, ":etag": {"S": item["etag"]}}
            return self._put(item, MISSING_OVER_PENDING_CONDITION, values, names={"#status": "status"})
        return self._put(item, "attribute_not_exists(image_uri)", None, names=None)

    def _put(
        self,
        item: Mapping[str, Any],
        condition: str,
        values: dict[str, Any] | None,
        names: dict[str, str] | None,
    ) -> bool:
        params: dict[str, Any] = {
            "TableName": self._table_name,
            "Item": {k: self._serializer.serialize(_dynamo_value(v)) for k, v in item.items() if v is not None},
            "ConditionExpression": condition,
        }
        if values:
            params["ExpressionAttributeValues"] = values
        if names:
            params["ExpressionAttributeNames"] = names
        try:
            self._client.put_item(**params)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise TransientFault(f"DynamoDB PutItem failed: {_error_text(error)}") from error
        except BotoCoreError as error:
            raise TransientFault(f"DynamoDB PutItem failed: {_error_text(error)}") from error
        return True


def _dynamo_value(value: Any) -> Any:
    # DynamoDB numbers must be Decimal; str() keeps the float's shortest repr instead of binary noise.
    return Decimal(str(value)) if isinstance(value, float) else value


class SsmModelRegistry:
    """The current model id: the value of the registry's SSM String parameter, cached for `max_age_seconds`.

    Until the training pipeline has registered a model the parameter does not exist: the labeller then records
    `fallback` (MODEL_ID) and warns once; the next lookup after the cache expires tries SSM again. Any other SSM
    error raises TransientFault, so the record fails and is retried, instead of being attributed to a guess.
    Called as `registry()` it is the `model_id` callable labeller_core.Labeller takes.
    """

    def __init__(
        self,
        client: Any,
        parameter_name: str,
        *,
        fallback: str,
        max_age_seconds: float = MODEL_PARAMETER_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._parameter_name = parameter_name
        self._fallback = fallback
        self._max_age_seconds = max_age_seconds
        self._clock = clock
        self._warn = warn or logging.getLogger(__name__).warning
        self._value: str | None = None
        self._read_at = 0.0
        self._warned = False
        self._lock = threading.Lock()  # one handler thread today; cheap insurance for a threaded batch later

    def __call__(self) -> str:
        with self._lock:
            now = self._clock()
            if self._value is None or now - self._read_at >= self._max_age_seconds:
                self._value = self._read()
                self._read_at = now
            return self._value

    def _read(self) -> str:
        failed = f"SSM GetParameter {self._parameter_name} failed"
        try:
            response = self._client.get_parameter(Name=self._parameter_name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
                if not self._warned:
                    self._warned = True
                    self._warn(
                        f"model registry parameter {self._parameter_name} does not exist (no model registered "
                        f"yet): recording MODEL_ID {self._fallback!r} as the model"
                    )
                return self._fallback
            raise TransientFault(f"{failed}: {_error_text(error)}") from error
        except BotoCoreError as error:
            raise TransientFault(f"{failed}: {_error_text(error)}") from error
        value = str(response.get("Parameter", {}).get("Value", "")).strip()
        if not value:
            # SSM refuses empty values, so this is a malformed answer: retry rather than write an empty model.
            raise TransientFault(f"SSM parameter {self._parameter_name} has no value")
        # A registered model after a fallback period: warn again if it ever disappears.
        self._warned = False
        return value


class S3ModelProfiles:
    """The profile a model id is served with: model_profile.json beside its weights, cached per model id.

    The model id is the S3 prefix the endpoint serves (MODEL_ID or the registry's value); the record is
    `<prefix>model_profile.json` (classification.model_profile.resolve_profile). It is listed before it is read:
    the function may list that one key only (an `s3:prefix` condition), and S3 answers a GetObject of a missing
    key with 403 unless the caller may list the bucket, so a model without a record (trained before profiles
    existed: a fine-tune) would be indistinguishable from a missing grant. Any S3 error, and a record naming no
    known profile, raise TransientFault: labelling with a guessed profile would ask the model the wrong question.
    Called as `profiles(model_id)` it is the `profiles` callable labeller_core.Labeller takes.
    """

    def __init__(
        self,
        client: Any,
        *,
        max_age_seconds: float = MODEL_PARAMETER_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._max_age_seconds = max_age_seconds
        self._clock = clock
        self._cache: dict[str, tuple[ModelProfile, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, model_id: str) -> ModelProfile:
        with self._lock:
            now = self._clock()
            cached = self._cache.get(model_id)
            if cached is None or now - cached[1] >= self._max_age_seconds:
                try:
                    cached = (resolve_profile(model_id, read=self._read), now)
                except InvalidProfile as error:
                    raise TransientFault(f"the model profile record of {model_id} is unusable: {error}") from error
                self._cache[model_id] = cached
            return cached[0]

    def _read(self, bucket: str, key: str) -> bytes | None:
        try:
            listed = self._client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
            if not any(entry.get("Key") == key for entry in listed.get("Contents", [])):
                return None
            response = self._client.get_object(Bucket=bucket, Key=key)
            try:
                return response["Body"].read()
            finally:
                response["Body"].close()
        except (ClientError, BotoCoreError, OSError) as error:
            raise TransientFault(f"reading s3://{bucket}/{key} failed: {_error_text(error)}") from error
