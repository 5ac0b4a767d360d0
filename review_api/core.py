"""The review API's logic: list the queue, record decisions, undo them. No boto3 here.

The labels table and the photo bucket are injected behind the protocols below (review_api/aws.py implements
them with boto3; the tests use moto through the same classes); handler.py is the thin Powertools adapter.

A decision is stored on the photo's own item, beside the model's result, which stays untouched:
- `review_decision`   confirm | correct | reject
- `human_label`       the label the reviewer settled on (confirm: the model's label; absent for reject)
- `status`            REVIEWED (confirm/correct) or REVIEW_REJECTED (not a usable hotel photo)
- `reviewed_by`, `reviewed_by_sub`, `reviewed_at`   who (the JWT's name and subject) and when (ISO-8601 UTC)
- `status_before_review`   what the model had decided, so an undo restores it exactly
`label`, `confidence`, `model`, `classified_at`, `reason` stay as the model wrote them (the review report compares
the two). The labeller never overwrites an item carrying `review_decision` (lambda/labeller_core.py).

Concurrency: every photo shown carries a `token` naming the state it was shown in (status, classified_at,
reviewed_at); a decision is written only if the item is still in that state, so two reviewers never silently
overwrite each other, and a photo the model re-labelled meanwhile is not decided on stale information. The
second writer gets a Conflict that says what changed and by whom. Requests are parsed and checked in
review_api/inputs.py before they reach the service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from review_api.inputs import (
    DECISIONS,
    DEFAULT_STATUS,
    REVIEW_REJECTED,
    REVIEWED,
    BadRequest,
    Conflict,
    Expected,
    Filters,
    ListQuery,
    NotFound,
    Reviewer,
    ReviewError,
    cursor_of,
    expected_of,
    image_uri_of,
    photo_id,
    start_key_of,
    token_of,
)

# The attribute whose presence marks a human decision; the labeller checks the same name (labeller_core).
DECISION_ATTRIBUTE = "review_decision"
# Items DynamoDB evaluates per Query call, and calls per request: filters can discard most of a page, and a
# request must end in bounded time. The cursor resumes exactly where the last call stopped.
QUERY_PAGE_ITEMS = 200
MAX_QUERY_CALLS = 10
# "N left" reads the status partition with Select=COUNT (1 MB per call, ~2,500 items); beyond this many calls
# the page shows "N+" instead of an exact count.
MAX_COUNT_CALLS = 40
# The scheduled backlog probe may read further (~2.5 M items); a larger queue is reported as a lower bound.
BACKLOG_COUNT_CALLS = 1000
PRESIGNED_URL_SECONDS = 300  # long enough to look at a photo, short enough that a leaked URL soon dies
_REVIEW_ATTRIBUTES = (
    DECISION_ATTRIBUTE,
    "human_label",
    "reviewed_by",
    "reviewed_by_sub",
    "reviewed_at",
    "status_before_review",
)


# -- the injected boundaries --------------------------------------------------------------------------------


class LabelTable(Protocol):
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
        """One Query of the `by-status` index: matching items and DynamoDB's LastEvaluatedKey."""
        ...

    def count_status(
        self, status: str, *, since: str | None, until: str | None, filters: Filters, max_calls: int
    ) -> tuple[int, bool]:
        """How many items match, and whether that is exact (False when max_calls ran out)."""
        ...

    def get(self, image_uri: str) -> dict[str, Any] | None: ...

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
        """SET values (those in keep_first only if absent) and REMOVE names, if the item exists and matches
        `expected` (and, for an undo, was decided by `expected_reviewer_sub`). The new item, or None if the
        condition failed."""
        ...


class PhotoStore(Protocol):
    def presign(self, bucket: str, key: str, version_id: str | None, expires_in: int) -> str: ...

    def exists(self, bucket: str, key: str, version_id: str | None) -> bool: ...


@dataclass(frozen=True)
class ReviewConfig:
    bucket: str
    labels: tuple[str, ...]
    upload_prefix: str = "uploads/"
    presigned_url_seconds: int = PRESIGNED_URL_SECONDS


# -- the logic ----------------------------------------------------------------------------------------------


class ReviewService:
    def __init__(
        self,
        config: ReviewConfig,
        *,
        table: LabelTable,
        photos: PhotoStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self._table = table
        self._photos = photos
        self._clock = clock

    # -- reading ----------------------------------------------------------------------------------------

    def list(self, query: ListQuery) -> dict[str, Any]:
        """One page of the queue (oldest first by default) and, on the first page, how many are left."""
        start_key = self._start_key(query)
        since = query.since
        # classified_at is ISO-8601 ('2026-12-01T10:...'); '~' sorts after every character of a timestamp.
        until = f"{query.until}~" if query.until else None
        items: list[dict[str, Any]] = []
        next_key: dict[str, Any] | None = None
        for _ in range(MAX_QUERY_CALLS):
            found, next_key = self._table.query_status(
                query.status,
                since=since,
                until=until,
                filters=query.filters,
                limit=QUERY_PAGE_ITEMS,
                start_key=start_key,
                ascending=not query.newest_first,
            )
            items += found
            if len(items) >= query.limit or next_key is None:
                break
            start_key = next_key
        if len(items) > query.limit:
            items = items[: query.limit]
            last = items[-1]
            # Resume right after the last item returned: its index key is a valid ExclusiveStartKey.
            next_key = {name: last[name] for name in ("image_uri", "status", "classified_at")}
        page: dict[str, Any] = {
            "photos": [self.view(item) for item in items],
            "cursor": cursor_of(next_key) if next_key else None,
        }
        if query.cursor is None:
            count, exact = self._table.count_status(
                query.status, since=since, until=until, filters=query.filters, max_calls=MAX_COUNT_CALLS
            )
            page["remaining"] = {"count": count, "exact": exact}
        return page

    def backlog(self, *, max_calls: int = BACKLOG_COUNT_CALLS) -> tuple[int, bool]:
        """How many photos wait in NEEDS_REVIEW (and whether the count is exact)."""
        return self._table.count_status(
            DEFAULT_STATUS, since=None, until=None, filters=Filters(), max_calls=max_calls
        )

    def _start_key(self, query: ListQuery) -> dict[str, Any] | None:
        return start_key_of(query.cursor, query.status) if query.cursor is not None else None

    def get(self, photo: str) -> dict[str, Any]:
        """The photo's current state, with whether its labelled version still exists in the bucket."""
        uri = image_uri_of(photo)
        item = self._table.get(uri)
        if item is None:
            raise NotFound(f"{uri} is not in the labels table (deleted since the queue was loaded)")
        view = self.view(item)
        if view["photo_url"] is not None:
            bucket, key = _split(uri)
            if not self._photos.exists(bucket, key, item.get("version_id")):
                view["photo_url"] = None
                view["photo_problem"] = (
                    "the photo no longer exists in the bucket (this version was deleted or replaced after it was "
                    "labelled); reject it or skip it"
                )
        return view

    def view(self, item: Mapping[str, Any]) -> dict[str, Any]:
        uri = str(item["image_uri"])
        confidence = item.get("confidence")
        view: dict[str, Any] = {
            "id": photo_id(uri),
            "image_uri": uri,
            "hotel_id": item.get("hotel_id"),
            "label": item.get("label"),
            "confidence": float(confidence) if confidence is not None else None,
            "status": item.get("status"),
            "reason": item.get("reason"),
            "model": item.get("model"),
            "classified_at": item.get("classified_at"),
            "version_id": item.get("version_id"),
            "decision": item.get(DECISION_ATTRIBUTE),
            "human_label": item.get("human_label"),
            "reviewed_by": item.get("reviewed_by"),
            "reviewed_at": item.get("reviewed_at"),
            "token": token_of(item),
            "photo_url": None,
            "photo_problem": None,
        }
        problem = self._photo_problem(item)
        if problem:
            view["photo_problem"] = problem
        else:
            bucket, key = _split(uri)
            view["photo_url"] = self._photos.presign(
                bucket, key, item.get("version_id"), self.config.presigned_url_seconds
            )
        return view

    def _photo_problem(self, item: Mapping[str, Any]) -> str | None:
        if item.get("status") == "MISSING":
            return "the photo was deleted before it was labelled"
        bucket, key = _split(str(item["image_uri"]))
        if bucket != self.config.bucket or not key.startswith(self.config.upload_prefix):
            # The API may read only the upload prefix of the photo bucket (least privilege).
            allowed = f"s3://{self.config.bucket}/{self.config.upload_prefix}"
            return f"the photo lies outside {allowed}, the only place this API may read photos from"
        return None

    # -- writing ----------------------------------------------------------------------------------------

    def decide(self, photo: str, body: Mapping[str, Any], reviewer: Reviewer) -> dict[str, Any]:
        """Record confirm / correct / reject on the photo's item, if it is unchanged since it was shown."""
        uri = image_uri_of(photo)
        if not isinstance(body, Mapping):
            raise BadRequest("the request body must be a JSON object")
        decision = body.get("decision")
        if decision not in DECISIONS:
            raise BadRequest(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        expected = expected_of(body.get("token"))
        label = body.get("label")
        if decision == "correct":
            if not isinstance(label, str) or label not in self.config.labels:
                raise BadRequest(f"label {label!r} is not in the taxonomy; pick one of the taxonomy's labels")
        elif label is not None:
            raise BadRequest(f"'label' is only sent with decision 'correct', not {decision!r}")
        current = self._table.get(uri)
        if current is None:
            raise NotFound(f"{uri} is not in the labels table (deleted since it was shown)")
        if decision == "confirm" and not current.get("label"):
            raise BadRequest(f"{uri} has no model label to confirm: pick a label (correct) or reject it")
        human_label = current.get("label") if decision == "confirm" else label
        values: dict[str, Any] = {
            "status": REVIEW_REJECTED if decision == "reject" else REVIEWED,
            DECISION_ATTRIBUTE: decision,
            "reviewed_by": reviewer.name,
            "reviewed_by_sub": reviewer.sub,
            "reviewed_at": self._now(),
            "status_before_review": expected.status,
        }
        remove: list[str] = []
        if human_label is None:
            remove.append("human_label")
        else:
            values["human_label"] = human_label
        updated = self._table.update(
            uri, values=values, remove=remove, expected=expected, keep_first=("status_before_review",)
        )
        if updated is None:
            raise self._conflict(uri, expected)
        return self.view(updated)

    def undo(self, photo: str, body: Mapping[str, Any], reviewer: Reviewer) -> dict[str, Any]:
        """Take back the reviewer's own last decision: the item returns to the model's result."""
        uri = image_uri_of(photo)
        if not isinstance(body, Mapping):
            raise BadRequest("the request body must be a JSON object")
        expected = expected_of(body.get("token"))
        if expected.reviewed_at is None:
            raise BadRequest("this token names no decision to undo (send the token the decision returned)")
        current = self._table.get(uri)
        if current is None:
            raise NotFound(f"{uri} is not in the labels table (deleted since it was decided)")
        previous = current.get("status_before_review")
        if not previous:
            raise Conflict("the photo carries no decision to undo", current=self.view(current))
        updated = self._table.update(
            uri,
            values={"status": previous},
            remove=list(_REVIEW_ATTRIBUTES),
            expected=expected,
            expected_reviewer_sub=reviewer.sub,
        )
        if updated is None:
            if current.get("reviewed_by_sub") != reviewer.sub:
                raise Conflict(
                    f"only the reviewer who decided can undo: decided by {current.get('reviewed_by')}",
                    current=self.view(current),
                )
            raise self._conflict(uri, expected)
        return self.view(updated)

    def _conflict(self, uri: str, expected: Expected) -> ReviewError:
        current = self._table.get(uri)
        if current is None:
            return NotFound(f"{uri} is not in the labels table (deleted since it was shown)")
        view = self.view(current)
        if current.get("reviewed_at") != expected.reviewed_at:
            if current.get(DECISION_ATTRIBUTE):
                what = current[DECISION_ATTRIBUTE]
                if current.get("human_label"):
                    what += f" as {current['human_label']}"
                message = (
                    f"already decided by {current.get('reviewed_by')} at {current.get('reviewed_at')} ({what}); "
                    "your decision was not saved"
                )
            else:
                message = "the earlier decision was undone meanwhile; your decision was not saved"
        elif current.get("classified_at") != expected.classified_at:
            message = (
                f"the model re-labelled this photo at {current.get('classified_at')} "
                f"({current.get('label')}, status {current.get('status')}); review the new result"
            )
        else:
            message = f"the photo's status changed from {expected.status} to {current.get('status')}"
        return Conflict(message, current=view)

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="milliseconds")


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


__all__ = [
    "DECISION_ATTRIBUTE",
    "LabelTable",
    "PhotoStore",
    "ReviewConfig",
    "ReviewService",
]
