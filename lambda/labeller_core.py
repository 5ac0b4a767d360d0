"""The labeller's logic: one S3 object in, at most one labels-table write out. No boto3 here.

Storage, endpoint and table are injected behind the small protocols below (labeller_aws.py implements them
with boto3; the tests use moto through the same classes), so every rule of the upload path is testable as plain
Python and the Powertools adapter (handler.py) stays a thin shell. What to label arrives as ObjectRefs, parsed
from S3 notifications and backfill batches by labeller_inputs.py.

Statuses written to the table (one item per `s3://bucket/key`):
- LABELED       the model named a taxonomy label and its profile's routing rule accepts it (a fine-tune:
                confidence >= CONFIDENCE_THRESHOLD; a base model: margin >= BASE_MARGIN_THRESHOLD).
- NEEDS_REVIEW  a taxonomy label the rule does not accept (or no logprobs in the answer); `reason` says why.
- REJECTED      the object cannot be a model input (not an image, corrupt, too large, ...); `reason` says why.
- MISSING       the notification named an object that no longer exists; only written when the table has
                nothing for that URI yet (a deletion never erases an earlier label), or, in a scheduled window,
                over the PENDING item of that very version (scheduled_core.py).
- PENDING       async mode: submitted, no answer yet (async_core.py); scheduled mode: waiting for the next
                labelling window (scheduled_core.py).
Outcomes that write nothing: SKIPPED (outside the upload prefix, same version already final, replaced by a newer
version before it was read, a concurrent duplicate won the conditional write, or a reviewer has decided the photo:
an item with `review_decision` is never overwritten, checked before any work and again in the conditional write).

Ordering and idempotency: an item remembers the version it describes (`etag`, `version_id`,
`source_last_modified`). The object is read with `If-Match: <etag of the notification>`, so a late or
duplicate notification for a replaced version reads nothing; the conditional write accepts only a strictly newer
`source_last_modified`, a different version of the same second, or the same version whose result is not yet
final (or was produced by another model, for `reclassify`). Known limit: two versions uploaded within the same
second *and* processed concurrently can leave the older one's label (S3's LastModified has 1-s resolution).

Model identity: every item records the model that produced it (`model`), and `reclassify` compares against it, so
a backfill with reclassify relabels what an earlier model (the base model on day one) labelled.
It is MODEL_ID, or, with MODEL_PARAMETER_NAME, the value of the model registry parameter, read through an
injected callable (labeller_aws.SsmModelRegistry caches it for 60 s), so a rollout is picked up without a deploy.
The model's profile (classification/model_profile.py: the request, the answer shape, the routing rule) is looked
up per model id through another injected callable (labeller_aws.S3ModelProfiles reads model_profile.json beside
the weights), so the request always matches the model that answers it.

Faults: anything transient (endpoint throttling/5xx/timeouts/model loading, S3 or DynamoDB errors) and an answer
outside the taxonomy (a model fault, not an input fault) raise, so SQS redelivers the message and, after
maxReceiveCount, moves it to the DLQ. Nothing is written for them, so nothing is lost.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from labeller_inputs import ObjectRef

from classification.contract import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    InvalidAnswer,
    Prediction,
    Taxonomy,
)
from classification.images import DEFAULT_MAX_PIXELS, MAX_SIDE, InvalidImage, normalize
from classification.labeller_environment import (
    DEFAULT_HOTEL_ID_PATTERN,
    DEFAULT_UPLOAD_PREFIX,
    REALTIME,
    LabellerEnvironment,
)
from classification.model_profile import FINE_TUNE, ModelProfile, RoutingRule

# Objects larger than this are rejected without being downloaded: the Lambda holds the whole file in memory and
# no camera photo comes near it (a 50-MP JPEG is ~25 MB).
MAX_OBJECT_BYTES = 50 * 1024 * 1024
# Set on an item by the review API (review_api/core.py) when a person confirms, corrects or rejects the photo:
# the automatic path (uploads, backfill, reclassify) never writes over such an item.
HUMAN_DECISION_ATTRIBUTE = "review_decision"


class Status(StrEnum):
    LABELED = "LABELED"
    NEEDS_REVIEW = "NEEDS_REVIEW"
    REJECTED = "REJECTED"
    MISSING = "MISSING"
    # endpoint.mode async: submitted to the async endpoint, no result yet (lambda/async_core.py), the status of a
    # photo the table did not know. endpoint.mode scheduled: waiting for a window's labelling job
    # (lambda/scheduled_core.py), the status of every photo version until its result replaces it.
    PENDING = "PENDING"
    SKIPPED = "SKIPPED"  # an outcome only: never written to the table


FINAL_STATUSES = frozenset({Status.LABELED, Status.NEEDS_REVIEW, Status.REJECTED})
# Results a new model can change; a REJECTED photo stays rejected whatever the model.
RECLASSIFIABLE_STATUSES = frozenset({Status.LABELED, Status.NEEDS_REVIEW})


class TransientFault(Exception):
    """A fault worth retrying later (throttling, 5xx, timeout, model loading, a malformed answer)."""


class ObjectMissing(Exception):
    """The object no longer exists."""


class ObjectSuperseded(Exception):
    """The object was replaced since the notification (its ETag no longer matches)."""


# -- the injected boundaries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    body: bytes | None  # None when the object exceeds max_bytes (not downloaded)
    size: int
    etag: str  # without quotes
    version_id: str | None
    last_modified: datetime


class ObjectStore(Protocol):
    def get(self, bucket: str, key: str, *, if_match: str | None, max_bytes: int) -> StoredObject:
        """Raise ObjectMissing, ObjectSuperseded (If-Match failed) or TransientFault."""
        ...


class Endpoint(Protocol):
    def invoke(self, body: bytes) -> bytes:
        """POST the JSON body (application/json); raise TransientFault on any endpoint error."""
        ...


class NoEndpoint:
    """The endpoint of a labeller whose step in between is no real-time call (async, scheduled): never invoked."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def invoke(self, body: bytes) -> bytes:
        raise AssertionError(self._reason)


class LabelStore(Protocol):
    def get(self, image_uri: str) -> Mapping[str, Any] | None:
        """The current item (strongly consistent read), or None."""
        ...

    def put_result(self, item: Mapping[str, Any], *, final_statuses: tuple[str, ...]) -> bool:
        """Write a LABELED / NEEDS_REVIEW / REJECTED item if it is newer (module docstring); False if not."""
        ...

    def put_missing(self, item: Mapping[str, Any], *, replace_pending: bool = False) -> bool:
        """Write a MISSING item only if the table has nothing for its URI, or (replace_pending) a PENDING item of
        the same ETag without a reviewer's decision; False otherwise."""
        ...


# -- configuration ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabellerConfig:
    model_id: str  # written to each item; only the fallback when model_parameter_name is set
    taxonomy: Taxonomy
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    base_margin_threshold: float | None = None  # None: every answer of a base-profile model goes to review
    upload_prefix: str = DEFAULT_UPLOAD_PREFIX
    hotel_id_pattern: re.Pattern[str] = field(default_factory=lambda: re.compile(DEFAULT_HOTEL_ID_PATTERN))
    max_object_bytes: int = MAX_OBJECT_BYTES
    max_side: int = MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    model_parameter_name: str | None = None  # the model registry (SSM String parameter) naming the current model

    def routing_rule(self, profile: ModelProfile) -> RoutingRule:
        """The served model's profile's rule with this deployment's thresholds."""
        return profile.routing_rule(
            confidence_threshold=self.confidence_threshold, margin_threshold=self.base_margin_threshold
        )

    @classmethod
    def from_environment(cls, env: LabellerEnvironment, *, task_root: Path | None = None) -> LabellerConfig:
        """Build from the parsed, validated environment (classification/labeller_environment.py); a relative
        TAXONOMY_FILE is under `task_root`, by default the function's (LAMBDA_TASK_ROOT)."""
        return cls(
            model_id=env.model_id,
            taxonomy=Taxonomy.load(env.taxonomy_path(task_root)),
            confidence_threshold=env.confidence_threshold,
            base_margin_threshold=env.base_margin_threshold,
            upload_prefix=DEFAULT_UPLOAD_PREFIX if env.upload_prefix is None else env.upload_prefix,
            hotel_id_pattern=re.compile(
                DEFAULT_HOTEL_ID_PATTERN if env.hotel_id_pattern is None else env.hotel_id_pattern
            ),
            model_parameter_name=env.model_parameter_name,
        )


# -- the logic ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    image_uri: str
    status: Status
    reason: str | None = None
    label: str | None = None
    confidence: float | None = None
    endpoint_ms: float | None = None  # set when the endpoint was called
    model: str | None = None  # the model the result was recorded for (None when nothing was compared or written)


@dataclass(frozen=True)
class Prepared:
    """A photo version that passed every check and is ready for the model (`Labeller.prepare`).

    `request` is the body every path sends: the real-time endpoint's InvokeEndpoint body, the async request object,
    and what a scheduled window's job hands vLLM's offline engine. `Labeller.record` writes the answer to it.
    """

    ref: ObjectRef
    stored: StoredObject
    model: str
    request: bytes
    # The profile `model` is served with (classification/model_profile.py): `request` is in it, and `record` reads
    # the answer and routes it with it.
    profile: ModelProfile = FINE_TUNE

    @property
    def image_uri(self) -> str:
        return self.ref.image_uri


class Labeller:
    """One photo version in, at most one table write out, in two seams every labelling path shares:

    - `prepare(ref)`: every rule before the model (prefix, reviewer's decision, cheap resume, If-Match read,
      MISSING, REJECTED for bad files, normalisation) -> a `Prepared` request, or the final Outcome.
    - `record(prepared, response)`: the model's answer -> parser, confidence, threshold, conditional write.
    `process` is the real-time path (prepare, invoke the endpoint, record); async_core.AsyncSubmitter and
    scheduled_core.PendingRecorder replace the step in between (`_label`), and a scheduled window's job calls the
    two seams around vLLM's offline engine.
    """

    # A MISSING result may replace a PENDING item of the same version (scheduled mode: the photo a window was
    # asked to label is gone, a terminal status); elsewhere MISSING is written only when the table has nothing.
    missing_replaces_pending = False
    # The endpoint mode (classification/labeller_environment.py) whose step in between this class implements: what
    # its PENDING outcomes mean (the handler's metric names).
    endpoint_mode: str = REALTIME

    def __init__(
        self,
        config: LabellerConfig,
        *,
        objects: ObjectStore,
        endpoint: Endpoint,
        labels: LabelStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timer: Callable[[], float] = time.perf_counter,
        model_id: Callable[[], str] | None = None,
        profiles: ProfileLookup | None = None,
    ) -> None:
        """`model_id` names the current model (e.g. a cached registry read); it may raise TransientFault.

        Without it the model is config.model_id. `profiles` gives the profile a model id is served with
        (labeller_aws.S3ModelProfiles reads the record beside its weights); without it every model is a fine-tune.
        """
        self.config = config
        self._objects = objects
        self._endpoint = endpoint
        self._labels = labels
        self._clock = clock
        self._timer = timer
        self._model_id = model_id or (lambda: config.model_id)
        self._profiles = profiles or _fine_tune

    def process(self, ref: ObjectRef, *, reclassify: bool = False) -> Outcome:
        """Label one object; raises TransientFault (or a client error) when it should be retried."""
        prepared = self.prepare(ref, reclassify=reclassify)
        if isinstance(prepared, Outcome):
            return prepared
        return self._label(prepared)

    def prepare(self, ref: ObjectRef, *, reclassify: bool = False) -> Prepared | Outcome:
        """Everything before the model: a Prepared request, or the Outcome when the photo needs no model (skipped,
        MISSING and REJECTED are written here). Raises TransientFault (or a client error) to be retried."""
        screened = self._screen(ref, reclassify)
        if isinstance(screened, Outcome):
            return screened
        model, existing = screened
        uri = ref.image_uri
        try:
            stored = self._objects.get(
                ref.bucket, ref.key, if_match=ref.etag, max_bytes=self.config.max_object_bytes
            )
        except ObjectMissing:
            return self._record_missing(ref, model)
        except ObjectSuperseded:
            return Outcome(uri, Status.SKIPPED, reason="object was replaced by a newer version before it was read")
        if not ref.etag and (skip := self._skip_reason(existing, stored.etag, reclassify, model)):
            return Outcome(uri, Status.SKIPPED, reason=skip, model=model)

        if stored.body is None:
            return self._write_result(ref, stored, model, Status.REJECTED, reason=self._too_large(stored))
        try:
            image = normalize(stored.body, max_side=self.config.max_side, max_pixels=self.config.max_pixels)
        except InvalidImage as error:
            return self._write_result(ref, stored, model, Status.REJECTED, reason=error.reason)
        profile = self._profiles(model)
        return Prepared(ref, stored, model, encode_request(self.config.taxonomy, image.jpeg, profile), profile)

    def record(
        self,
        prepared: Prepared,
        response: bytes | str | Mapping[str, Any],
        *,
        endpoint_ms: float | None = None,
    ) -> Outcome:
        """Write the model's answer to a prepared photo (conditionally: a newer version or a reviewer wins).

        An answer outside the taxonomy raises TransientFault: structured outputs should make it impossible, so when
        it happens the model or its serving config is at fault, not the photo; retry rather than mislabel it.
        """
        try:
            prediction = self.config.taxonomy.parse_response(response, profile=prepared.profile)
        except InvalidAnswer as error:
            raise TransientFault(f"endpoint answered outside the taxonomy: {error}") from error
        status, reason = judge(prediction, self.config.routing_rule(prepared.profile))
        return self._write_result(
            prepared.ref,
            prepared.stored,
            prepared.model,
            status,
            reason=reason,
            label=prediction.label,
            confidence=prediction.confidence,
            margin=prediction.margin,
            endpoint_ms=endpoint_ms,
        )

    def _label(self, prepared: Prepared) -> Outcome:
        """The real-time step between the seams: ask the endpoint and wait for its answer."""
        started = self._timer()
        response = self._endpoint.invoke(prepared.request)
        return self.record(prepared, response, endpoint_ms=(self._timer() - started) * 1000.0)

    def _screen(self, ref: ObjectRef, reclassify: bool) -> tuple[str, Mapping[str, Any] | None] | Outcome:
        """The checks that need no S3 read: (the current model, the table's item), or the SKIPPED Outcome."""
        uri = ref.image_uri
        if not ref.key.startswith(self.config.upload_prefix):
            return Outcome(
                uri, Status.SKIPPED, reason=f"key is outside the upload prefix {self.config.upload_prefix!r}"
            )
        if ref.key.endswith("/"):
            # The S3 console's "Create folder" writes an empty object named like this: not a photo, not an error.
            return Outcome(uri, Status.SKIPPED, reason="key names a folder placeholder, not a photo")
        # Read once per photo, so the reclassify comparison and the write name the same model.
        model = self._model_id()
        existing = self._labels.get(uri)
        if existing and existing.get(HUMAN_DECISION_ATTRIBUTE):
            # A reviewer's decision outranks any model output, new model or not (the write is conditional too).
            return Outcome(uri, Status.SKIPPED, reason="a reviewer has decided this photo", model=model)
        # Cheap resume: a duplicate delivery or a re-run backfill costs one read, no download, no endpoint call.
        if ref.etag and (skip := self._skip_reason(existing, ref.etag, reclassify, model)):
            return Outcome(uri, Status.SKIPPED, reason=skip, model=model)
        return model, existing

    def _too_large(self, stored: StoredObject) -> str:
        return f"object is {stored.size:,} bytes, larger than the {self.config.max_object_bytes:,}-byte limit"

    # -- helpers --------------------------------------------------------------------------------------------

    def _skip_reason(
        self, existing: Mapping[str, Any] | None, etag: str, reclassify: bool, model: str
    ) -> str | None:
        """Why this version needs no work (None: it does); async_core adds "already in flight"."""
        if self._already_done(existing, etag, reclassify, model):
            return "this version already has a final result"
        return None

    @staticmethod
    def _already_done(existing: Mapping[str, Any] | None, etag: str, reclassify: bool, model: str) -> bool:
        if not existing or existing.get("etag") != etag or existing.get("status") not in FINAL_STATUSES:
            return False
        if reclassify and existing.get("status") in RECLASSIFIABLE_STATUSES:
            return existing.get("model") == model
        return True

    def _base_item(self, ref: ObjectRef, status: Status, model: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "image_uri": ref.image_uri,
            "status": status.value,
            "model": model,
            "classified_at": self._clock().astimezone(UTC).isoformat(timespec="milliseconds"),
        }
        if hotel_id := self._hotel_id(ref):
            item["hotel_id"] = hotel_id
        return item

    def _hotel_id(self, ref: ObjectRef) -> str | None:
        """The ref's own hotel (a window's manifest) or the pattern's match on the key; None when neither names one
        (GSI key attributes cannot be empty strings: hotel_id is then left out, a sparse index)."""
        if ref.hotel_id:
            return ref.hotel_id
        match = self.config.hotel_id_pattern.search(ref.key)
        return match.group("hotel_id") if match and match.group("hotel_id") else None

    def _write_result(
        self,
        ref: ObjectRef,
        stored: StoredObject,
        model: str,
        status: Status,
        *,
        reason: str | None = None,
        label: str | None = None,
        confidence: float | None = None,
        margin: float | None = None,
        endpoint_ms: float | None = None,
    ) -> Outcome:
        item = self._base_item(ref, status, model)
        item["etag"] = stored.etag
        item["source_last_modified"] = format_last_modified(stored.last_modified)
        if stored.version_id:
            item["version_id"] = stored.version_id
        if label is not None:
            item["label"] = label
        if confidence is not None:
            item["confidence"] = round(confidence, 6)
        if margin is not None:
            item["margin"] = round(margin, 6)
        if reason is not None:
            item["reason"] = reason
        written = self._labels.put_result(item, final_statuses=tuple(s.value for s in FINAL_STATUSES))
        if not written:
            return Outcome(
                ref.image_uri,
                Status.SKIPPED,
                reason="a newer or identical result was recorded concurrently",
                endpoint_ms=endpoint_ms,
            )
        return Outcome(ref.image_uri, status, reason, label, confidence, endpoint_ms, model)

    def _record_missing(self, ref: ObjectRef, model: str) -> Outcome:
        reason = "object no longer exists (deleted before it was processed)"
        item = self._base_item(ref, Status.MISSING, model)
        item["reason"] = reason
        if ref.etag:
            item["etag"] = ref.etag
        if not self._labels.put_missing(item, replace_pending=self.missing_replaces_pending):
            return Outcome(ref.image_uri, Status.SKIPPED, reason=f"{reason}; the table already has a result")
        return Outcome(ref.image_uri, Status.MISSING, reason=reason, model=model)


def encode_request(taxonomy: Taxonomy, jpeg: bytes, profile: ModelProfile = FINE_TUNE) -> bytes:
    """The endpoint's request body for one normalised photo in the served model's profile: the same bytes in
    real-time and async mode."""
    return json.dumps(taxonomy.build_request(jpeg, profile=profile), separators=(",", ":")).encode()


def judge(prediction: Prediction, rule: RoutingRule) -> tuple[Status, str | None]:
    """LABELED when the served model's routing rule accepts the answer, else NEEDS_REVIEW with the reason.

    `rule` is `LabellerConfig.routing_rule(profile)`: a fine-tune's answer needs a confidence of at least
    CONFIDENCE_THRESHOLD, a base model's a margin of at least BASE_MARGIN_THRESHOLD (unset: it always goes to
    review).
    """
    reason = rule.review_reason(prediction)
    return (Status.LABELED, None) if reason is None else (Status.NEEDS_REVIEW, reason)


# model id -> the profile it is served with (classification.model_profile.resolve_profile behind a cache)
ProfileLookup = Callable[[str], ModelProfile]


def _fine_tune(model: str) -> ModelProfile:
    return FINE_TUNE


def format_last_modified(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC, so DynamoDB's string comparison in the write condition orders it correctly."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- backfill batches ---------------------------------------------------------------------------------------

# Stop taking new items when less than this is left of the invocation: one item's worst case is ~2 endpoint
# attempts of 65 s plus S3/DynamoDB (labeller_aws.ENDPOINT_CLIENT_CONFIG). The unstarted items are retried by the
# map's Retry; finished ones are skipped then.
BACKFILL_TIME_MARGIN_MS = 140_000
