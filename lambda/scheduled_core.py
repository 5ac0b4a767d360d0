"""endpoint.mode scheduled: photos are recorded PENDING now and labelled by a window's job later. No boto3 here.

docs/scheduled-mode.md has the whole design. Two labellers, both labeller_core.Labeller with one step changed:

- PendingRecorder, the upload and backfill Lambdas' labeller. Every rule before the model is labeller_core's
  (prefix, reviewer's decision, cheap resume, If-Match read, MISSING); then, instead of asking an endpoint, it
  writes the photo version as PENDING (`classified_at` = since when it waits), findable through the by-status
  index, where a window's planner pages it from.
  - uploads (`validate=True`): the photo is read and normalised exactly as in real-time mode, so a bad file is
    REJECTED at once with the same reason;
  - backfill (`validate=False`): one HeadObject names the version, nothing is downloaded (a backfill lists
    millions of archived photos); an oversized file is REJECTED at once, any other bad file by the job.
  The write is conditional (scheduled_core's PendingStore.put_pending): a PENDING item replaces an older version's
  item, never the same version's own PENDING or result (a duplicate notification changes nothing, not even the
  waiting time), never a reviewer's decision; with reclassify it replaces a result another model produced.
- WindowLabeller, the labelling job's (labelling_job/run.py): `prepare` and `record` around vLLM's offline engine,
  nothing else. A photo deleted while PENDING gets MISSING over its PENDING item (a terminal status: the next
  window does not find it again); a photo replaced while PENDING is skipped (If-Match), its newer version has its
  own PENDING item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from labeller_core import (
    RECLASSIFIABLE_STATUSES,
    Labeller,
    LabellerConfig,
    LabelStore,
    NoEndpoint,
    ObjectMissing,
    ObjectStore,
    ObjectSuperseded,
    Outcome,
    Prepared,
    ProfileLookup,
    Status,
    StoredObject,
    format_last_modified,
)
from labeller_inputs import ObjectRef

from classification.labeller_environment import SCHEDULED

PENDING_REASON = "waiting for the next labelling window"
NO_ENDPOINT = "scheduled mode has no endpoint"


class HeadableObjects(ObjectStore, Protocol):
    def head(self, bucket: str, key: str, *, if_match: str | None) -> StoredObject:
        """The version's metadata, body None; raise ObjectMissing, ObjectSuperseded or TransientFault."""
        ...


class PendingStore(LabelStore, Protocol):
    def put_pending(self, item: Mapping[str, Any], *, replace_statuses: tuple[str, ...] = ()) -> bool:
        """Write a PENDING item if its version is newer than the item's, or (reclassify) the same version's result
        in one of `replace_statuses` produced by another model; never over a reviewer's decision. False if not."""
        ...


class PendingRecorder(Labeller):
    """Scheduled mode's upload (`validate=True`) and backfill (`validate=False`) labeller (module docstring)."""

    endpoint_mode = SCHEDULED

    def __init__(
        self,
        config: LabellerConfig,
        *,
        objects: HeadableObjects,
        labels: PendingStore,
        validate: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        model_id: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(
            config,
            objects=objects,
            endpoint=NoEndpoint(NO_ENDPOINT),
            labels=labels,
            clock=clock,
            model_id=model_id,
        )
        self._headable = objects
        self._pending = labels
        self.validate = validate

    def process(self, ref: ObjectRef, *, reclassify: bool = False) -> Outcome:
        if self.validate:
            prepared = self.prepare(ref, reclassify=reclassify)
            if isinstance(prepared, Outcome):
                return prepared
            return self._write_pending(prepared.ref, prepared.stored, prepared.model, reclassify)
        screened = self._screen(ref, reclassify)
        if isinstance(screened, Outcome):
            return screened
        model, existing = screened
        try:
            stored = self._headable.head(ref.bucket, ref.key, if_match=ref.etag)
        except ObjectMissing:
            return self._record_missing(ref, model)
        except ObjectSuperseded:
            return Outcome(ref.image_uri, Status.SKIPPED, reason="object was replaced by a newer version")
        if not ref.etag and (skip := self._skip_reason(existing, stored.etag, reclassify, model)):
            return Outcome(ref.image_uri, Status.SKIPPED, reason=skip, model=model)
        if stored.size > self.config.max_object_bytes:
            return self._write_result(ref, stored, model, Status.REJECTED, reason=self._too_large(stored))
        return self._write_pending(ref, stored, model, reclassify)

    def _skip_reason(
        self, existing: Mapping[str, Any] | None, etag: str, reclassify: bool, model: str
    ) -> str | None:
        reason = super()._skip_reason(existing, etag, reclassify, model)
        if (
            reason is None
            and existing
            and existing.get("status") == Status.PENDING
            and existing.get("etag") == etag
        ):
            reason = "this version already waits for a labelling window"
        return reason

    def _label(self, prepared: Prepared) -> Outcome:
        raise AssertionError("PendingRecorder.process writes PENDING; nothing asks a model here")

    def _write_pending(self, ref: ObjectRef, stored: StoredObject, model: str, reclassify: bool) -> Outcome:
        item = self._base_item(ref, Status.PENDING, model)  # classified_at: since when the photo waits
        item["etag"] = stored.etag
        item["source_last_modified"] = format_last_modified(stored.last_modified)
        if stored.version_id:
            item["version_id"] = stored.version_id
        item["reason"] = PENDING_REASON
        replace = tuple(sorted(status.value for status in RECLASSIFIABLE_STATUSES)) if reclassify else ()
        if not self._pending.put_pending(item, replace_statuses=replace):
            return Outcome(
                ref.image_uri,
                Status.SKIPPED,
                reason="the table holds a newer version, this version's PENDING or result, or a reviewer's "
                "decision",
                model=model,
            )
        return Outcome(ref.image_uri, Status.PENDING, reason=PENDING_REASON, model=model)


class WindowLabeller(Labeller):
    """The labelling job's labeller: `prepare` and `record` around the offline engine (module docstring)."""

    missing_replaces_pending = True
    endpoint_mode = SCHEDULED

    def __init__(
        self,
        config: LabellerConfig,
        *,
        objects: ObjectStore,
        labels: LabelStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        model_id: Callable[[], str] | None = None,
        profiles: ProfileLookup | None = None,
    ) -> None:
        # `profiles`: the job runs one model: the profile recorded in its model directory (labelling_job/run.py).
        super().__init__(
            config,
            objects=objects,
            endpoint=NoEndpoint(NO_ENDPOINT),
            labels=labels,
            clock=clock,
            model_id=model_id,
            profiles=profiles,
        )

    def _label(self, prepared: Prepared) -> Outcome:
        raise AssertionError("the labelling job batches prepared photos through the offline engine (record)")

    def _hotel_id(self, ref: ObjectRef) -> str | None:
        # The PENDING item named the hotel with the pattern of the path that recorded it (upload or backfill).
        return ref.hotel_id


__all__ = ["PENDING_REASON", "HeadableObjects", "PendingRecorder", "PendingStore", "WindowLabeller"]
