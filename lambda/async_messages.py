"""What the two halves of endpoint.mode async exchange (async_core.py), and how SageMaker answers them.

- the inference id: deterministic per photo version and model, so a resubmission or a duplicate carries the same;
- the Ticket written beside each request: the photo version the request was built from;
- the Claim the submitter records in the labels table (the `pending_*` attributes);
- SageMaker's completion Notification (Success or Error topic -> SQS, raw or inside an SNS envelope).

Only the standard library here; async_aws.py stores them with boto3.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

# A request is stored as <request prefix><inference id>/request.json with ticket.json beside it.
REQUEST_FILE = "request.json"
TICKET_FILE = "ticket.json"
INFERENCE_ID_LENGTH = 40  # hex digits of SHA-256; InferenceId allows 64 characters

# The claim's attributes on the photo's item (async_core.py's docstring says when each is set).
PENDING_ATTRIBUTES = (
    "pending_inference_id",
    "pending_etag",
    "pending_source_last_modified",
    "pending_model",
    "pending_claimed_at",
    "pending_invoked_at",
    "pending_attempts",
    "pending_failed_at",
    "pending_error",
)


def inference_id(bucket: str, key: str, etag: str, version_id: str | None, model: str) -> str:
    """Deterministic per photo version and model: a resubmission or duplicate carries the same id."""
    text = "\n".join((bucket, key, etag, version_id or "", model))
    return hashlib.sha256(text.encode()).hexdigest()[:INFERENCE_ID_LENGTH]


@dataclass(frozen=True)
class Ticket:
    """What the label writer needs to record an answer: the photo version the request was built from."""

    inference_id: str
    bucket: str
    key: str
    etag: str
    source_last_modified: str
    model: str
    version_id: str | None = None
    hotel_id: str | None = None

    @property
    def image_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Ticket:
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"ticket is not JSON: {data[:200]!r}") from error
        required = ("inference_id", "bucket", "key", "etag", "source_last_modified", "model")
        if not isinstance(raw, dict) or any(
            not isinstance(raw.get(name), str) or not raw[name] for name in required
        ):
            raise ValueError(f"ticket lacks one of {required}: {str(raw)[:200]}")
        optional = {name: raw.get(name) for name in ("version_id", "hotel_id") if isinstance(raw.get(name), str)}
        return cls(**{name: raw[name] for name in required}, **optional)


@dataclass(frozen=True)
class Claim:
    ticket: Ticket
    claimed_at: str
    lease_cutoff: str  # a never-invoked claim older than this may be taken over
    stale_cutoff: str  # an invoked claim older than this may be taken over
    final_statuses: tuple[str, ...]


@dataclass(frozen=True)
class Notification:
    """One SageMaker async inference notification (AsyncInferenceConfig.NotificationConfig)."""

    inference_id: str
    succeeded: bool
    input_location: str
    output_location: str | None  # success
    failure_location: str | None  # error
    failure_reason: str | None
    received_time: str | None
    event_time: str | None


def parse_notification(body: str) -> Notification:
    """An SQS message body: SageMaker's JSON, raw or inside an SNS envelope. ValueError for anything else."""
    try:
        message = json.loads(body)
        if isinstance(message, dict) and message.get("Type") == "Notification" and "Message" in message:
            message = json.loads(message["Message"])  # SNS without raw message delivery
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"message body is not JSON: {body[:200]!r}") from error
    if not isinstance(message, dict) or message.get("eventSource") != "aws:sagemaker":
        raise ValueError(f"message is not a SageMaker async inference notification: {body[:200]!r}")
    status = message.get("invocationStatus")
    request = message.get("requestParameters") or {}
    response = message.get("responseParameters") or {}
    identifier = message.get("inferenceId")
    input_location = request.get("inputLocation") if isinstance(request, dict) else None
    if (
        status not in ("Completed", "Failed")
        or not isinstance(identifier, str)
        or not isinstance(input_location, str)
    ):
        raise ValueError(f"notification lacks invocationStatus/inferenceId/inputLocation: {body[:200]!r}")
    if not isinstance(response, dict):
        response = {}
    return Notification(
        inference_id=identifier,
        succeeded=status == "Completed",
        input_location=input_location,
        output_location=response.get("outputLocation"),
        failure_location=response.get("failureLocation"),
        failure_reason=message.get("failureReason"),
        received_time=message.get("receivedTime"),
        event_time=message.get("eventTime"),
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return bucket, key
