"""endpoint.mode async: submit photos to a SageMaker asynchronous endpoint, record its answers. No boto3 here.

Two halves, each behind small protocols (async_aws.py implements them with boto3; tests use moto):

- AsyncSubmitter (the upload path's and the backfill's labeller in async mode) is labeller_core.Labeller with one
  step changed: every rule before the endpoint call is the same code (prefix, reviewer's decision, cheap resume,
  If-Match read, MISSING, REJECTED for bad inputs), then instead of waiting for the answer it
    1. claims the photo version in the labels table (conditional UpdateItem of `pending_*` attributes),
    2. writes the exact request body the real-time path sends (labeller_core.encode_request) and a ticket naming
       the photo version to the request bucket,
    3. calls InvokeEndpointAsync(InputLocation=<request>, InferenceId=<deterministic id of bucket, key, version,
       model>) and marks the claim invoked.
  A duplicate delivery finds the claim and skips: one inference per photo version, not one per message.
- LabelWriter (the completion Lambda) reads SageMaker's notification (Success or Error topic -> SQS), the ticket
  and the response, parses it with the same taxonomy parser and writes the final item with a PutItem conditional
  on the claim it answers (`pending_inference_id = :id`): a stale version's or a replaced model's answer never
  wins, a duplicate notification finds the claim gone (the final write removed it) and writes nothing.
  An inference error (or an answer outside the taxonomy) is resubmitted up to `max_attempts` in all, then the
  claim records the failure and the message fails, so SQS retries it and moves it to the DLQ.

Table attributes (besides docs/interfaces.md's): `pending_inference_id`, `pending_etag`,
`pending_source_last_modified`, `pending_model`, `pending_claimed_at`, `pending_invoked_at`, `pending_attempts`,
`pending_failed_at`, `pending_error`. A photo the table did not know gets `status` PENDING; an earlier result
keeps its status and label until the new one replaces it. The final write is a whole-item PutItem, so no
`pending_*` attribute outlives its answer.

A claim is taken over (the photo is submitted again) only when it failed, when it was never invoked and is older
than CLAIM_LEASE_SECONDS (its Lambda died between claim and invoke), or when it was invoked longer ago than
`stale_after_seconds` (SageMaker's request TTL plus the invocation timeout: no answer can still come). Re-running
the backfill over a prefix therefore resubmits exactly the photos whose inference failed or was lost.

The ticket, the claim, SageMaker's notification and the inference id are defined in async_messages.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from async_messages import Claim, Notification, Ticket, inference_id
from labeller_core import (
    FINAL_STATUSES,
    HUMAN_DECISION_ATTRIBUTE,
    Labeller,
    LabellerConfig,
    NoEndpoint,
    Outcome,
    Prepared,
    ProfileLookup,
    Status,
    TransientFault,
    format_last_modified,
    judge,
)

from classification.contract import InvalidAnswer
from classification.labeller_environment import ASYNC, MAX_REQUEST_TTL_SECONDS, AsyncEnvironment
from classification.model_profile import FINE_TUNE

# A claim never invoked is abandoned once it is older than the longest Lambda invocation: its owner is gone.
CLAIM_LEASE_SECONDS = 900
DEFAULT_MAX_ATTEMPTS = 3  # inferences per photo version, the first included, before the message is dead-lettered
DEFAULT_REQUEST_TTL_SECONDS = MAX_REQUEST_TTL_SECONDS  # InvokeEndpointAsync's longest wait in the queue, 6 h
DEFAULT_INVOCATION_TIMEOUT_SECONDS = 600  # one photo takes ~1 s on a warm instance; 10 min is a broken one
STALE_MARGIN_SECONDS = 900


class InferenceFailed(Exception):
    """The async inference failed `max_attempts` times: the message fails until SQS moves it to the DLQ."""


# -- the injected boundaries --------------------------------------------------------------------------------


class RequestStore(Protocol):
    def put(self, inference_id: str, body: bytes, ticket: Ticket) -> str:
        """Write the request body and its ticket; return the request's s3:// URI. TransientFault on error."""
        ...

    def location(self, inference_id: str) -> str:
        """The s3:// URI of an inference's request (where `put` wrote it)."""
        ...

    def ticket(self, input_location: str) -> Ticket:
        """The ticket stored beside a request. ValueError if the location is not one of ours."""
        ...

    def read(self, location: str) -> bytes | None:
        """An s3:// object's bytes (a response or failure); None when it does not exist."""
        ...


class AsyncEndpoint(Protocol):
    def submit(self, input_location: str, inference_id: str) -> str:
        """InvokeEndpointAsync; returns SageMaker's OutputLocation. TransientFault on any error."""
        ...


class PendingStore(Protocol):
    def get(self, image_uri: str) -> Mapping[str, Any] | None: ...

    def put_result(self, item: Mapping[str, Any], *, final_statuses: tuple[str, ...]) -> bool: ...

    def put_missing(self, item: Mapping[str, Any]) -> bool: ...

    def claim(self, claim: Claim) -> bool:
        """Record a pending inference if the version is newer and no live claim holds it; False if not."""
        ...

    def release(self, image_uri: str, inference_id: str) -> None:
        """Drop a claim that was never invoked (the submission failed), so a retry can take it at once."""
        ...

    def mark_invoked(self, image_uri: str, inference_id: str, invoked_at: str) -> bool: ...

    def record_retry(self, image_uri: str, inference_id: str, *, max_attempts: int, error: str) -> int | None:
        """Count one more attempt if fewer than max_attempts were made: the new count, or None if exhausted or
        the claim is no longer this inference's."""
        ...

    def record_failure(self, image_uri: str, inference_id: str, *, failed_at: str, error: str) -> bool: ...

    def complete(self, item: Mapping[str, Any], inference_id: str) -> bool:
        """Write the final item if the claim is still `inference_id`'s (and no reviewer decided); False if not."""
        ...


def _iso(moment: datetime) -> str:
    return format_last_modified(moment)


# -- configuration ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AsyncSettings:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    request_ttl_seconds: int = DEFAULT_REQUEST_TTL_SECONDS
    invocation_timeout_seconds: int = DEFAULT_INVOCATION_TIMEOUT_SECONDS
    claim_lease_seconds: int = CLAIM_LEASE_SECONDS

    @property
    def stale_after_seconds(self) -> int:
        """After this long an invoked request can no longer be answered (queued TTL + run time + margin)."""
        return self.request_ttl_seconds + self.invocation_timeout_seconds + STALE_MARGIN_SECONDS

    @classmethod
    def from_environment(cls, environment: AsyncEnvironment) -> AsyncSettings:
        """The limits the stack set (parsed and checked by classification/labeller_environment.py); unset ones
        keep their defaults."""
        limits = {
            "max_attempts": environment.max_attempts,
            "request_ttl_seconds": environment.request_ttl_seconds,
            "invocation_timeout_seconds": environment.invocation_timeout_seconds,
        }
        return cls(**{name: value for name, value in limits.items() if value is not None})


# -- the request side ---------------------------------------------------------------------------------------


class AsyncSubmitter(Labeller):
    """Labeller whose endpoint step submits an async request and records the claim (module docstring)."""

    endpoint_mode = ASYNC

    def __init__(
        self,
        config: LabellerConfig,
        *,
        objects: Any,
        labels: PendingStore,
        requests: RequestStore,
        endpoint: AsyncEndpoint,
        settings: AsyncSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        model_id: Callable[[], str] | None = None,
        profiles: ProfileLookup | None = None,
    ) -> None:
        super().__init__(
            config,
            objects=objects,
            endpoint=NoEndpoint("the async submitter never calls the real-time endpoint"),
            labels=labels,
            clock=clock,
            model_id=model_id,
            profiles=profiles,
        )
        self._pending = labels
        self._requests = requests
        self._async_endpoint = endpoint
        self.settings = settings or AsyncSettings()

    def _skip_reason(
        self, existing: Mapping[str, Any] | None, etag: str, reclassify: bool, model: str
    ) -> str | None:
        reason = super()._skip_reason(existing, etag, reclassify, model)
        if reason is None and existing and self._in_flight(existing, etag, model):
            reason = "this version is already submitted to the async endpoint"
        return reason

    def _in_flight(self, existing: Mapping[str, Any], etag: str, model: str) -> bool:
        if existing.get("pending_etag") != etag or existing.get("pending_model") != model:
            return False
        if existing.get("pending_failed_at"):
            return False
        now = self._clock()
        invoked = existing.get("pending_invoked_at")
        if invoked:
            return str(invoked) >= _iso(now - timedelta(seconds=self.settings.stale_after_seconds))
        claimed = existing.get("pending_claimed_at")
        return bool(claimed) and str(claimed) >= _iso(now - timedelta(seconds=self.settings.claim_lease_seconds))

    def _label(self, prepared: Prepared) -> Outcome:
        ref, stored, model = prepared.ref, prepared.stored, prepared.model
        identifier = inference_id(ref.bucket, ref.key, stored.etag, stored.version_id, model)
        ticket = Ticket(
            inference_id=identifier,
            bucket=ref.bucket,
            key=ref.key,
            etag=stored.etag,
            source_last_modified=format_last_modified(stored.last_modified),
            model=model,
            version_id=stored.version_id,
            hotel_id=self._hotel_id(ref),
        )
        now = self._clock()
        claim = Claim(
            ticket=ticket,
            claimed_at=_iso(now),
            lease_cutoff=_iso(now - timedelta(seconds=self.settings.claim_lease_seconds)),
            stale_cutoff=_iso(now - timedelta(seconds=self.settings.stale_after_seconds)),
            final_statuses=tuple(s.value for s in FINAL_STATUSES),
        )
        if not self._pending.claim(claim):
            return Outcome(
                ref.image_uri,
                Status.SKIPPED,
                reason="a newer version, a final result or a live submission is already recorded",
                model=model,
            )
        try:
            location = self._requests.put(identifier, prepared.request, ticket)
            self._async_endpoint.submit(location, identifier)
        except Exception:
            # Nothing reached the endpoint: free the claim so the retry (SQS or the map's Retry) submits at once.
            self._pending.release(ref.image_uri, identifier)
            raise
        self._pending.mark_invoked(ref.image_uri, identifier, _iso(self._clock()))
        return Outcome(ref.image_uri, Status.PENDING, reason=f"submitted as inference {identifier}", model=model)


# -- the completion side ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """What one notification did; `outcome.status` is LABELED/NEEDS_REVIEW (written), PENDING (resubmitted)
    or SKIPPED (superseded, decided by a reviewer, or a duplicate notification)."""

    outcome: Outcome
    inference_id: str
    queue_ms: float | None = None  # SageMaker's receivedTime -> eventTime: queueing plus inference


class LabelWriter:
    def __init__(
        self,
        config: LabellerConfig,
        *,
        labels: PendingStore,
        requests: RequestStore,
        endpoint: AsyncEndpoint,
        settings: AsyncSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        profiles: ProfileLookup | None = None,
    ) -> None:
        # `profiles`: the profile the ticket's model is served with (labeller_core.Labeller's seam of that name).
        self.config = config
        self._labels = labels
        self._requests = requests
        self._endpoint = endpoint
        self.settings = settings or AsyncSettings()
        self._clock = clock
        self._profiles = profiles or (lambda model: FINE_TUNE)

    def handle(self, notification: Notification) -> Completion:
        """Record one answer; raises TransientFault (retry) or InferenceFailed (attempts exhausted)."""
        ticket = self._requests.ticket(notification.input_location)
        if ticket.inference_id != notification.inference_id:
            raise ValueError(
                f"notification {notification.inference_id} names the request of inference {ticket.inference_id}"
            )
        uri = ticket.image_uri
        queue_ms = _elapsed_ms(notification.received_time, notification.event_time)
        if not notification.succeeded:
            return self._retry(ticket, notification.failure_reason or "inference failed", queue_ms)
        response = self._requests.read(notification.output_location) if notification.output_location else None
        if response is None:
            return self._retry(ticket, "the success notification names no readable response", queue_ms)
        profile = self._profiles(ticket.model)
        try:
            prediction = self.config.taxonomy.parse_response(response, profile=profile)
        except InvalidAnswer as error:
            # A model or serving fault, not the photo's: ask again rather than store a wrong label.
            return self._retry(ticket, f"endpoint answered outside the taxonomy: {error}", queue_ms)
        status, reason = judge(prediction, self.config.routing_rule(profile))
        item: dict[str, Any] = {
            "image_uri": uri,
            "status": status.value,
            "model": ticket.model,
            "classified_at": _iso_ms(self._clock()),
            "etag": ticket.etag,
            "source_last_modified": ticket.source_last_modified,
            "label": prediction.label,
        }
        if ticket.hotel_id:
            item["hotel_id"] = ticket.hotel_id
        if ticket.version_id:
            item["version_id"] = ticket.version_id
        if prediction.confidence is not None:
            item["confidence"] = round(prediction.confidence, 6)
        if prediction.margin is not None:
            item["margin"] = round(prediction.margin, 6)
        if reason is not None:
            item["reason"] = reason
        if not self._labels.complete(item, ticket.inference_id):
            return Completion(self._superseded(uri, ticket.model), ticket.inference_id, queue_ms)
        outcome = Outcome(uri, status, reason, prediction.label, prediction.confidence, None, ticket.model)
        return Completion(outcome, ticket.inference_id, queue_ms)

    def _retry(self, ticket: Ticket, error: str, queue_ms: float | None) -> Completion:
        uri = ticket.image_uri
        attempts = self._labels.record_retry(
            uri, ticket.inference_id, max_attempts=self.settings.max_attempts, error=error[:1000]
        )
        if attempts is None:
            current = self._labels.get(uri)
            if not current or current.get("pending_inference_id") != ticket.inference_id:
                return Completion(self._superseded(uri, ticket.model), ticket.inference_id, queue_ms)
            self._labels.record_failure(
                uri, ticket.inference_id, failed_at=_iso(self._clock()), error=error[:1000]
            )
            raise InferenceFailed(
                f"{uri}: inference {ticket.inference_id} failed {self.settings.max_attempts} time(s); last error: "
                f"{error[:500]}"
            )
        self._endpoint.submit(self._requests.location(ticket.inference_id), ticket.inference_id)
        self._labels.mark_invoked(uri, ticket.inference_id, _iso(self._clock()))
        reason = (
            f"inference failed ({error[:300]}); resubmitted, attempt {attempts} of {self.settings.max_attempts}"
        )
        return Completion(
            Outcome(uri, Status.PENDING, reason=reason, model=ticket.model), ticket.inference_id, queue_ms
        )

    @staticmethod
    def _superseded(uri: str, model: str) -> Outcome:
        return Outcome(
            uri,
            Status.SKIPPED,
            reason="the claim this answer was for is gone (newer version, other model, reviewer, already written)",
            model=model,
        )


def _iso_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _elapsed_ms(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
        finish = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (finish - begin).total_seconds() * 1000.0)


__all__ = [
    "HUMAN_DECISION_ATTRIBUTE",
    "AsyncSettings",
    "AsyncSubmitter",
    "Completion",
    "InferenceFailed",
    "LabelWriter",
    "TransientFault",
]
