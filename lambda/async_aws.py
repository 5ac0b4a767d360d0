"""Data access for endpoint.mode async: the request bucket, InvokeEndpointAsync and the claim writes.

Like labeller_aws.py, the only place that knows botocore's shapes; it speaks async_core's and async_messages'
vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from async_core import AsyncSettings, AsyncSubmitter, LabelWriter
from async_messages import REQUEST_FILE, TICKET_FILE, Claim, Ticket, split_s3_uri
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from labeller_aws import DynamoLabelStore, S3ModelProfiles, S3ObjectStore, _error_text
from labeller_core import (
    HUMAN_DECISION_ATTRIBUTE,
    LabellerConfig,
    ProfileLookup,
    Status,
    TransientFault,
)

from classification.labeller_environment import (
    ENDPOINT_MODE,
    AsyncEnvironment,
    ConfigError,
    LabellerEnvironment,
)

# InvokeEndpointAsync only queues the request: it answers in milliseconds, so fail fast and let SQS retry.
ASYNC_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=15, retries={"mode": "standard", "total_max_attempts": 3}
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

# The claim's condition, on top of the real-time path's version ordering (labeller_aws.RESULT_CONDITION):
# no reviewer's decision; the existing *result* is older, or the same version without a final result from this
# model; and any existing *claim* is for an older version, for another version or model of the same second,
# or is this inference's own claim that failed, was abandoned before its invoke, or went stale.
CLAIM_CONDITION = (
    f"attribute_not_exists({HUMAN_DECISION_ATTRIBUTE})"
    " AND (attribute_not_exists(source_last_modified) OR source_last_modified < :lm"
    " OR (source_last_modified = :lm AND etag <> :etag)"
    " OR (source_last_modified = :lm AND etag = :etag AND (NOT #status IN ({finals}) OR model <> :model)))"
    " AND (attribute_not_exists(pending_inference_id) OR pending_source_last_modified < :lm"
    " OR (pending_source_last_modified = :lm AND pending_inference_id <> :iid)"
    " OR (pending_inference_id = :iid AND (attribute_exists(pending_failed_at)"
    " OR (attribute_not_exists(pending_invoked_at) AND pending_claimed_at < :lease)"
    " OR pending_invoked_at < :stale)))"
)
COMPLETE_CONDITION = f"attribute_not_exists({HUMAN_DECISION_ATTRIBUTE}) AND pending_inference_id = :iid"


class S3RequestStore:
    """Requests and tickets under `<prefix><inference id>/` of the (encrypted) async inference bucket."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"request prefix must end in '/', got {prefix!r}")
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def location(self, inference_id: str) -> str:
        return f"s3://{self._bucket}/{self._prefix}{inference_id}/{REQUEST_FILE}"

    def put(self, inference_id: str, body: bytes, ticket: Ticket) -> str:
        base = f"{self._prefix}{inference_id}/"
        try:
            # The ticket first: a request SageMaker can read always has the ticket its answer needs.
            self._client.put_object(
                Bucket=self._bucket, Key=base + TICKET_FILE, Body=ticket.to_json(), ContentType="application/json"
            )
            self._client.put_object(
                Bucket=self._bucket, Key=base + REQUEST_FILE, Body=body, ContentType="application/json"
            )
        except (ClientError, BotoCoreError) as error:
            raise TransientFault(f"S3 PutObject of the async request failed: {_error_text(error)}") from error
        return self.location(inference_id)

    def ticket(self, input_location: str) -> Ticket:
        bucket, key = split_s3_uri(input_location)
        if bucket != self._bucket or not key.startswith(self._prefix) or not key.endswith("/" + REQUEST_FILE):
            raise ValueError(f"{input_location} is not a request of s3://{self._bucket}/{self._prefix}")
        data = self.read(f"s3://{bucket}/{key[: -len(REQUEST_FILE)]}{TICKET_FILE}")
        if data is None:
            raise ValueError(f"the ticket of {input_location} does not exist")
        return Ticket.from_json(data)

    def read(self, location: str) -> bytes | None:
        bucket, key = split_s3_uri(location)
        try:
            response = self._client.get_object(Bucket=bucket, Key=key)
            return response["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "") in _MISSING_CODES:
                return None
            raise TransientFault(f"S3 GetObject {location} failed: {_error_text(error)}") from error
        except BotoCoreError as error:
            raise TransientFault(f"S3 GetObject {location} failed: {_error_text(error)}") from error


class SageMakerAsyncEndpoint:
    def __init__(
        self, client: Any, endpoint_name: str, *, request_ttl_seconds: int, invocation_timeout_seconds: int
    ) -> None:
        self._client = client
        self._endpoint_name = endpoint_name
        self._ttl = request_ttl_seconds
        self._timeout = invocation_timeout_seconds

    def submit(self, input_location: str, inference_id: str) -> str:
        try:
            response = self._client.invoke_endpoint_async(
                EndpointName=self._endpoint_name,
                InputLocation=input_location,
                InferenceId=inference_id,
                ContentType="application/json",
                Accept="application/json",
                RequestTTLSeconds=self._ttl,
                InvocationTimeoutSeconds=self._timeout,
            )
        except (ClientError, BotoCoreError) as error:
            raise TransientFault(f"InvokeEndpointAsync failed: {_error_text(error)}") from error
        return str(response.get("OutputLocation", ""))


class DynamoPendingStore(DynamoLabelStore):
    """The labels table with the claim writes of async mode (async_core's PendingStore)."""

    def claim(self, claim: Claim) -> bool:
        ticket = claim.ticket
        finals = {f":final{i}": {"S": status} for i, status in enumerate(claim.final_statuses)}
        values: dict[str, Any] = {
            ":iid": {"S": ticket.inference_id},
            ":etag": {"S": ticket.etag},
            ":lm": {"S": ticket.source_last_modified},
            ":model": {"S": ticket.model},
            ":now": {"S": claim.claimed_at},
            ":one": {"N": "1"},
            ":pending": {"S": Status.PENDING.value},
            ":lease": {"S": claim.lease_cutoff},
            ":stale": {"S": claim.stale_cutoff},
            **finals,
        }
        assignments = [
            "pending_inference_id = :iid",
            "pending_etag = :etag",
            "pending_source_last_modified = :lm",
            "pending_model = :model",
            "pending_claimed_at = :now",
            "pending_attempts = :one",
            # A photo the table did not know becomes PENDING; an earlier result keeps its status and label.
            "#status = if_not_exists(#status, :pending)",
            "classified_at = if_not_exists(classified_at, :now)",
        ]
        if ticket.hotel_id:
            values[":hotel"] = {"S": ticket.hotel_id}
            assignments.append("hotel_id = if_not_exists(hotel_id, :hotel)")
        return self._update(
            ticket.image_uri,
            "SET " + ", ".join(assignments) + " REMOVE pending_invoked_at, pending_failed_at, pending_error",
            CLAIM_CONDITION.format(finals=", ".join(finals)),
            values,
        )

    def release(self, image_uri: str, inference_id: str) -> None:
        self._update(
            image_uri,
            "REMOVE pending_inference_id, pending_etag, pending_source_last_modified, pending_model, "
            "pending_claimed_at, pending_attempts",
            "pending_inference_id = :iid AND attribute_not_exists(pending_invoked_at)",
            {":iid": {"S": inference_id}},
        )

    def mark_invoked(self, image_uri: str, inference_id: str, invoked_at: str) -> bool:
        return self._update(
            image_uri,
            "SET pending_invoked_at = :at",
            "pending_inference_id = :iid",
            {":iid": {"S": inference_id}, ":at": {"S": invoked_at}},
        )

    def record_retry(self, image_uri: str, inference_id: str, *, max_attempts: int, error: str) -> int | None:
        try:
            response = self._client.update_item(
                TableName=self._table_name,
                Key={"image_uri": {"S": image_uri}},
                UpdateExpression="SET pending_attempts = pending_attempts + :one, pending_error = :error "
                "REMOVE pending_invoked_at",
                ConditionExpression="pending_inference_id = :iid AND pending_attempts < :max "
                "AND attribute_not_exists(pending_failed_at)",
                ExpressionAttributeValues={
                    ":iid": {"S": inference_id},
                    ":one": {"N": "1"},
                    ":max": {"N": str(max_attempts)},
                    ":error": {"S": error or "unknown error"},
                },
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error_:
            if error_.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise TransientFault(f"DynamoDB UpdateItem failed: {_error_text(error_)}") from error_
        except BotoCoreError as error_:
            raise TransientFault(f"DynamoDB UpdateItem failed: {_error_text(error_)}") from error_
        return int(response["Attributes"]["pending_attempts"]["N"])

    def record_failure(self, image_uri: str, inference_id: str, *, failed_at: str, error: str) -> bool:
        return self._update(
            image_uri,
            "SET pending_failed_at = :at, pending_error = :error",
            "pending_inference_id = :iid",
            {":iid": {"S": inference_id}, ":at": {"S": failed_at}, ":error": {"S": error or "unknown error"}},
        )

    def complete(self, item: Mapping[str, Any], inference_id: str) -> bool:
        return self._put(item, COMPLETE_CONDITION, {":iid": {"S": inference_id}}, names=None)

    def _update(self, image_uri: str, expression: str, condition: str, values: dict[str, Any]) -> bool:
        params: dict[str, Any] = {
            "TableName": self._table_name,
            "Key": {"image_uri": {"S": image_uri}},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if "#status" in expression or "#status" in condition:
            params["ExpressionAttributeNames"] = {"#status": "status"}
        try:
            self._client.update_item(**params)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise TransientFault(f"DynamoDB UpdateItem failed: {_error_text(error)}") from error
        except BotoCoreError as error:
            raise TransientFault(f"DynamoDB UpdateItem failed: {_error_text(error)}") from error
        return True


def request_store(session: Any, environment: AsyncEnvironment) -> S3RequestStore:
    return S3RequestStore(session.client("s3"), environment.request_bucket, environment.request_prefix)


def async_endpoint(session: Any, endpoint_name: str, settings: AsyncSettings) -> SageMakerAsyncEndpoint:
    return SageMakerAsyncEndpoint(
        session.client("sagemaker-runtime", config=ASYNC_CLIENT_CONFIG),
        endpoint_name,
        request_ttl_seconds=settings.request_ttl_seconds,
        invocation_timeout_seconds=settings.invocation_timeout_seconds,
    )


def build_submitter(
    config: LabellerConfig,
    session: Any,
    environment: LabellerEnvironment,
    *,
    model_id: Callable[[], str] | None,
    profiles: ProfileLookup | None = None,
) -> AsyncSubmitter:
    """The upload path's / backfill's labeller when ENDPOINT_MODE=async (handler.get_labeller)."""
    async_environment = _async_part(environment)
    settings = AsyncSettings.from_environment(async_environment)
    return AsyncSubmitter(
        config,
        objects=S3ObjectStore(session.client("s3")),
        labels=DynamoPendingStore(session.client("dynamodb"), environment.table_name),
        requests=request_store(session, async_environment),
        endpoint=async_endpoint(session, environment.endpoint_name, settings),
        settings=settings,
        model_id=model_id,
        profiles=profiles,
    )


def build_label_writer(session: Any, environment: LabellerEnvironment) -> LabelWriter:
    """The completion Lambda's writer (async_handler.get_writer), from its parsed environment."""
    config = LabellerConfig.from_environment(environment)
    async_environment = _async_part(environment)
    settings = AsyncSettings.from_environment(async_environment)
    return LabelWriter(
        config,
        labels=DynamoPendingStore(session.client("dynamodb"), environment.table_name),
        requests=request_store(session, async_environment),
        endpoint=async_endpoint(session, environment.endpoint_name, settings),
        settings=settings,
        profiles=S3ModelProfiles(session.client("s3")),
    )


def _async_part(environment: LabellerEnvironment) -> AsyncEnvironment:
    if environment.async_inference is None:
        raise ConfigError(f"{ENDPOINT_MODE} must be 'async' for an async endpoint's functions")
    return environment.async_inference
