"""The review API's logic: the queue, leases on photos, counts; decisions are review_api/decisions.py. No boto3.

The labels table, its history table and the photo bucket are injected behind the protocols below (review_api/aws.py
implements them with boto3; the tests use moto through the same classes); handler.py is the thin Powertools
adapter.

A photo's current decision is stored on its own item, beside the model's result, which stays untouched:
- `review_decision`   confirm | correct | reject
- `human_label`       the label the reviewer settled on (confirm: the model's label; absent for reject)
- `status`            REVIEWED (confirm/correct) or REVIEW_REJECTED (not a usable hotel photo)
- `reviewed_by`, `reviewed_by_sub`, `reviewed_at`   who (the ID token's e-mail and subject) and when (ISO-8601 UTC)
- `status_before_review`   what the model had decided
Every change (decision, override, undo) is also appended to the history table (decisions.py), never rewritten.

Work is shared by leases: a reviewer who asks for work (`claim`) gets photos nobody else holds, each marked on its
item with `lease_sub`, `lease_by`, `lease_until` by a conditional write; a decision releases it, so does `release`
or the lease's end. A decision on a photo someone else holds is refused.

Every read that may walk far (a sparse filter, "N left" on a large backlog) stops at a time budget well inside the
Lambda's timeout and says so: a listing returns a cursor to continue from, a count says it is a lower bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from review_api.decisions import DECISION_ATTRIBUTE, Decisions
from review_api.export import export_cursor, export_start, manifest_row, next_export_status
from review_api.identity import Reviewer
from review_api.inputs import (
    DEFAULT_STATUS,
    BadRequest,
    Expected,
    Filters,
    ListQuery,
    NotFound,
    cursor_of,
    image_uri_of,
    photo_id,
    token_of,
)

# Items DynamoDB evaluates per Query call: filters can discard most of a page; the cursor resumes exactly there.
QUERY_PAGE_ITEMS = 200
# A count reads DynamoDB's 1-MB pages (~2,500 labels-table items each); tests set a smaller page.
COUNT_PAGE_ITEMS: int | None = None
# Seconds a listing or a claim may keep paging through the index, and "N left" may keep counting, per request.
# Together with a page of presigned URLs they stay well inside the API function's 15-s timeout
# (stacks/review/page.py API_TIMEOUT_SECONDS, a test holds the sum) and HTTP API's 30-s integration limit.
LIST_BUDGET_SECONDS = 5.0
COUNT_BUDGET_SECONDS = 3.0
# The scheduled backlog probe has the whole invocation (15 s) for its count.
BACKLOG_BUDGET_SECONDS = 12.0
# A claim holds a photo this long unless the config says otherwise (review.lease_seconds).
LEASE_SECONDS = 300
MAX_EXPORT_ROWS = 500  # rows per export page
PRESIGNED_URL_SECONDS = 300  # long enough to look at a photo, short enough that a leaked URL soon dies


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
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, int]:
        """One Query of the `by-status` index: matching items, DynamoDB's LastEvaluatedKey, items evaluated."""
        ...

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
        """One Select=COUNT Query (up to 1 MB of index, or `limit` items): how many matched, where to go on."""
        ...

    def get(self, image_uri: str) -> dict[str, Any] | None: ...

    def claim(
        self, image_uri: str, *, expected: Expected, sub: str, name: str, until: str, now: str
    ) -> dict[str, Any] | None:
        """Lease the item to `sub` until `until` if it is as expected and nobody else holds it; the new item."""
        ...

    def release(self, image_uri: str, *, sub: str) -> bool: ...

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
        """SET values (those in keep_first only if absent) and REMOVE names if the item is as expected and nobody
        but `sub` holds it, and append `entry` to the history, all or nothing."""
        ...

    def history(self, image_uri: str, *, newest_first: bool, limit: int | None = None) -> list[dict[str, Any]]: ...


class PhotoStore(Protocol):
    def presign(self, bucket: str, key: str, version_id: str | None, expires_in: int) -> str: ...

    def exists(self, bucket: str, key: str, version_id: str | None) -> bool: ...


@dataclass(frozen=True)
class ReviewConfig:
    bucket: str
    labels: tuple[str, ...]
    upload_prefix: str = "uploads/"
    presigned_url_seconds: int = PRESIGNED_URL_SECONDS
    lease_seconds: int = LEASE_SECONDS


class Budget:
    """A deadline on a monotonic clock: a walk through the index stops once it is spent."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._deadline = clock() + seconds

    def spent(self) -> bool:
        return self._clock() >= self._deadline


@dataclass
class Walk:
    """What one walk through the index found: the accepted photos and where to continue (None: the end)."""

    photos: list[dict[str, Any]]
    next_key: dict[str, Any] | None
    examined: int


def _index_key(item: Mapping[str, Any]) -> dict[str, Any]:
    # An item's own index key is a valid ExclusiveStartKey: the next Query starts right after it.
    return {name: item[name] for name in ("image_uri", "status", "classified_at")}


# -- the logic ----------------------------------------------------------------------------------------------


class ReviewService:
    def __init__(
        self,
        config: ReviewConfig,
        *,
        table: LabelTable,
        photos: PhotoStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._table = table
        self._photos = photos
        self._clock = clock
        self._monotonic = monotonic
        self.decisions = Decisions(table=table, labels=config.labels, view=self.view, now=self._now)

    # -- the queue --------------------------------------------------------------------------------------

    def list(
        self, query: ListQuery, *, me: Reviewer | None = None, budget_seconds: float = LIST_BUDGET_SECONDS
    ) -> dict[str, Any]:
        """One page of the queue (oldest first by default), read only; on the first page, how many are left."""
        walk = self._walk(query, Budget(budget_seconds, self._monotonic), lambda item: self.view(item, me=me))
        return self._page(query, walk)

    def claim(
        self,
        query: ListQuery,
        me: Reviewer,
        *,
        group: bool = False,
        budget_seconds: float = LIST_BUDGET_SECONDS,
    ) -> dict[str, Any]:
        """Up to `query.limit` photos nobody else holds, leased to `me`. With `group`, only photos the model gave
        one label (the query's, or the first claimable photo's), most confident first: a page of the grid."""
        now = self._now()
        until = self._iso(self._clock() + timedelta(seconds=self.config.lease_seconds))
        held = 0
        chosen: dict[str, str] = {}

        def take(item: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal held
            if self._held_by_other(item, me.sub, now):
                held += 1
                return None
            if group:
                label = item.get("label")
                if not label:
                    return None
                if chosen.setdefault("label", label) != label:
                    return None
            leased = self._table.claim(
                str(item["image_uri"]), expected=_expected(item), sub=me.sub, name=me.name, until=until, now=now
            )
            if leased is None:  # taken (or changed) between the read and the write
                held += 1
                return None
            return self.view(leased, me=me)

        walk = self._walk(query, Budget(budget_seconds, self._monotonic), take)
        if group:
            walk.photos.sort(key=lambda photo: -(photo["confidence"] or 0.0))
        page = self._page(query, walk)
        page |= {"held_by_others": held, "lease_seconds": self.config.lease_seconds}
        if group:
            page["group_label"] = query.filters.label or chosen.get("label")
        return page

    def release(self, body: Mapping[str, Any], me: Reviewer) -> dict[str, Any]:
        """Give back leases the reviewer no longer needs (the page does on leaving or changing the filter)."""
        ids = body.get("ids") if isinstance(body, Mapping) else None
        if not isinstance(ids, list) or not all(isinstance(value, str) for value in ids) or len(ids) > 100:
            raise BadRequest("'ids' must be a list of up to 100 photo ids")
        released = sum(self._table.release(image_uri_of(value), sub=me.sub) for value in ids)
        return {"released": released}

    def backlog(self, *, budget_seconds: float = BACKLOG_BUDGET_SECONDS) -> tuple[int, bool]:
        """How many photos wait in NEEDS_REVIEW (and whether the count is exact)."""
        return self._count(ListQuery(status=DEFAULT_STATUS), Budget(budget_seconds, self._monotonic))

    def _walk(
        self, query: ListQuery, budget: Budget, accept: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> Walk:
        """Page through the index from the query's cursor until `query.limit` items are accepted, the index ends
        or the budget is spent (after at least one Query): a sparse filter keeps reading instead of answering an
        empty page that looks like the end."""
        start_key = query.start_key()
        photos: list[dict[str, Any]] = []
        examined = 0
        while True:
            found, last, scanned = self._table.query_status(
                query.status,
                since=query.since,
                until=query.until_key,
                filters=query.filters,
                limit=QUERY_PAGE_ITEMS,
                start_key=start_key,
                ascending=not query.newest_first,
            )
            examined += scanned
            for position, item in enumerate(found):
                view = accept(item)
                if view is not None:
                    photos.append(view)
                if len(photos) >= query.limit:
                    at_end = last is None and position == len(found) - 1
                    return Walk(photos, None if at_end else _index_key(item), examined)
            if last is None:
                return Walk(photos, None, examined)
            start_key = last
            if budget.spent():
                return Walk(photos, start_key, examined)

    def _page(self, query: ListQuery, walk: Walk) -> dict[str, Any]:
        page: dict[str, Any] = {
            "photos": walk.photos,
            "cursor": cursor_of(walk.next_key) if walk.next_key else None,
            "examined": walk.examined,
        }
        if query.cursor is None:
            count, exact = self._count(query, Budget(COUNT_BUDGET_SECONDS, self._monotonic))
            page["remaining"] = {"count": count, "exact": exact}
        return page

    def _count(self, query: ListQuery, budget: Budget) -> tuple[int, bool]:
        """Select=COUNT pages until the index ends (exact) or the budget is spent (a lower bound)."""
        count = 0
        start_key: dict[str, Any] | None = None
        while True:
            found, start_key = self._table.count_status_page(
                query.status,
                since=query.since,
                until=query.until_key,
                filters=query.filters,
                start_key=start_key,
                limit=COUNT_PAGE_ITEMS,
            )
            count += found
            if start_key is None:
                return count, True
            if budget.spent():
                return count, False

    # -- one photo --------------------------------------------------------------------------------------

    def get(self, photo: str, *, me: Reviewer | None = None) -> dict[str, Any]:
        """The photo's current state, with whether its labelled version still exists in the bucket."""
        uri = image_uri_of(photo)
        item = self._table.get(uri)
        if item is None:
            raise NotFound(f"{uri} is not in the labels table (deleted since the queue was loaded)")
        view = self.view(item, me=me)
        if view["photo_url"] is not None:
            bucket, key = _split(uri)
            if not self._photos.exists(bucket, key, item.get("version_id")):
                view["photo_url"] = None
                view["photo_problem"] = (
                    "the photo no longer exists in the bucket (this version was deleted or replaced after it was "
                    "labelled); reject it or skip it"
                )
        return view

    def history(self, photo: str) -> dict[str, Any]:
        """Every change to the photo's decision, oldest first (who, when, what, what it replaced)."""
        uri = image_uri_of(photo)
        return {"id": photo_id(uri), "image_uri": uri, "history": self._table.history(uri, newest_first=False)}

    def view(self, item: Mapping[str, Any], *, me: Reviewer | None = None) -> dict[str, Any]:
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
            "reviewed_by_sub": item.get("reviewed_by_sub"),
            "reviewed_at": item.get("reviewed_at"),
            "status_before_review": item.get("status_before_review"),
            "lease": None,
            "token": token_of(item),
            "photo_url": None,
            "photo_problem": None,
        }
        if item.get("lease_sub") and str(item.get("lease_until", "")) > self._now():
            view["lease"] = {
                "by": item.get("lease_by"),
                "until": item.get("lease_until"),
                "mine": me is not None and item.get("lease_sub") == me.sub,
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

    @staticmethod
    def _held_by_other(item: Mapping[str, Any], sub: str, now: str) -> bool:
        return bool(item.get("lease_sub")) and item.get("lease_sub") != sub and str(item.get("lease_until")) > now

    # -- decisions (review_api/decisions.py) ------------------------------------------------------------

    def decide(self, photo: str, body: Mapping[str, Any], reviewer: Reviewer) -> dict[str, Any]:
        return self.decisions.decide(photo, body, reviewer)

    def decide_many(self, body: Mapping[str, Any], reviewer: Reviewer) -> dict[str, Any]:
        return self.decisions.decide_many(body, reviewer)

    def undo(self, photo: str, body: Mapping[str, Any], reviewer: Reviewer) -> dict[str, Any]:
        return self.decisions.undo(photo, body, reviewer)

    # -- export (leads) ---------------------------------------------------------------------------------

    def export_page(self, cursor: str | None, *, budget_seconds: float = LIST_BUDGET_SECONDS) -> dict[str, Any]:
        """A page of the manifest (review_api/export.py rows): every REVIEWED photo, then every REVIEW_REJECTED."""
        status, start_key = export_start(cursor)
        budget = Budget(budget_seconds, self._monotonic)
        rows: list[dict[str, Any]] = []
        while status is not None:
            items, start_key, _ = self._table.query_status(
                status,
                since=None,
                until=None,
                filters=Filters(),
                limit=MAX_EXPORT_ROWS - len(rows),
                start_key=start_key,
                ascending=True,
            )
            rows += [row for row in map(manifest_row, items) if row is not None]
            if start_key is None:
                status = next_export_status(status)
            if len(rows) >= MAX_EXPORT_ROWS or budget.spent():
                break
        return {"rows": rows, "cursor": export_cursor(status, start_key) if status is not None else None}

    def _now(self) -> str:
        return self._iso(self._clock())

    @staticmethod
    def _iso(moment: datetime) -> str:
        return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _expected(item: Mapping[str, Any]) -> Expected:
    return Expected(
        status=str(item.get("status")),
        classified_at=str(item.get("classified_at")),
        reviewed_at=item.get("reviewed_at") or None,
    )


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
