"""Work for several reviewers: leases on claimed photos, and filters and counts that do not lie (they read on
within a time budget and say when they stopped). Through the Lambda handler on moto, and the service with fake
clocks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from classification.contract import Taxonomy
from review_api import core
from review_api.aws import DynamoLabelTable, S3PhotoStore
from review_api.core import ReviewConfig, ReviewService
from review_api.identity import Reviewer
from review_api.inputs import BadRequest, Conflict, ListQuery
from tests.review_api.review_testkit import (
    BUCKET,
    HISTORY_TABLE,
    OTHER_CLAIMS,
    TABLE,
    Account,
    read_item,
    seed_photo,
)

ANA = Reviewer(sub="ana-sub", name="ana@example.com")
BEN = Reviewer(sub="ben-sub", name="ben@example.com")


def _at(minute: int) -> str:
    return f"2026-11-30T09:{minute:02d}:00.000+00:00"


def _seed(account: Account, count: int, *, hotel: str = "h1", start: int = 0, **kwargs: Any) -> None:
    for minute in range(start, start + count):
        seed_photo(
            account.s3,
            account.dynamodb,
            f"uploads/{hotel}/{minute:02d}.jpg",
            hotel_id=hotel,
            classified_at=_at(minute),
            **kwargs,
        )


def _names(photos: list[dict[str, Any]]) -> list[str]:
    return [p["image_uri"].rsplit("/", 1)[1] for p in photos]


def _service(account: Account, **kwargs: Any) -> ReviewService:
    return ReviewService(
        ReviewConfig(bucket=BUCKET, labels=Taxonomy.load().labels),
        table=DynamoLabelTable(account.dynamodb, TABLE, HISTORY_TABLE),
        photos=S3PhotoStore(account.s3),
        **kwargs,
    )


class Clock:
    """A wall clock the test moves, and a monotonic one that advances a second per reading (a slow index)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
        self._ticks = itertools.count()

    def wall(self) -> datetime:
        return self.now

    def slow(self) -> float:
        return float(next(self._ticks))


# -- leases -------------------------------------------------------------------------------------------------------


def test_two_reviewers_asking_for_work_get_photos_nobody_else_holds(account: Account) -> None:
    # Given six photos waiting
    _seed(account, 6)

    # When ana and then ben ask for three photos each
    status, ana = account.call("POST", "/api/claims", body={"limit": 3})
    assert status == 200, ana
    status, ben = account.call("POST", "/api/claims", body={"limit": 3}, claims=OTHER_CLAIMS)

    # Then they get disjoint photos, each leased to its reviewer for the lease's length, and ben is told 3 are held
    assert _names(ana["photos"]) == ["00.jpg", "01.jpg", "02.jpg"]
    assert _names(ben["photos"]) == ["03.jpg", "04.jpg", "05.jpg"] and ben["held_by_others"] == 3
    assert all(p["lease"]["mine"] and p["lease"]["by"] == "ana@example.com" for p in ana["photos"])
    assert ana["lease_seconds"] == core.LEASE_SECONDS and ana["remaining"] == {"count": 6, "exact": True}
    item = read_item(account.dynamodb, ana["photos"][0]["image_uri"])
    assert (
        item is not None and item["lease_by"] == "ana@example.com" and item["lease_until"] > item["classified_at"]
    )
    # And the read-only listing shows who holds what
    _, listing = account.call("GET", "/api/photos", claims=OTHER_CLAIMS)
    assert [(p["lease"]["by"], p["lease"]["mine"]) for p in listing["photos"][:1]] == [("ana@example.com", False)]


def test_a_decision_on_a_photo_someone_else_holds_is_refused_and_a_decision_releases_the_lease(
    account: Account,
) -> None:
    _seed(account, 1)
    _, listing = account.call("GET", "/api/photos")
    shown = listing["photos"][0]
    _, ben = account.call("POST", "/api/claims", body={"limit": 1}, claims=OTHER_CLAIMS)

    # ana decides what she saw in the listing while ben holds it: refused, naming ben
    status, body = account.call(
        "POST", f"/api/photos/{shown['id']}/decision", body={"decision": "confirm", "token": shown["token"]}
    )
    assert status == 409 and "held by ben@example.com" in body["message"]
    # ben decides: saved, and the lease is gone with it
    photo = ben["photos"][0]
    status, _ = account.call(
        "POST",
        f"/api/photos/{photo['id']}/decision",
        body={"decision": "confirm", "token": photo["token"]},
        claims=OTHER_CLAIMS,
    )
    item = read_item(account.dynamodb, shown["image_uri"])
    assert (
        status == 200 and item is not None and "lease_sub" not in item and item["reviewed_by"] == "ben@example.com"
    )


def test_a_lease_ends_by_itself_or_when_given_back(account: Account) -> None:
    clock = Clock()
    service = _service(account, clock=clock.wall)
    _seed(account, 2)
    held = service.claim(ListQuery(limit=2), ANA)["photos"]
    assert [p["lease"]["mine"] for p in held] == [True, True]
    assert service.claim(ListQuery(limit=2), BEN)["photos"] == []

    # ana gives one back (the page does when she changes the filter or leaves); the other expires
    assert service.release({"ids": [held[0]["id"]]}, ANA) == {"released": 1}
    assert _names(service.claim(ListQuery(limit=2), BEN)["photos"]) == ["00.jpg"]
    clock.now += timedelta(seconds=core.LEASE_SECONDS + 1)
    assert _names(service.claim(ListQuery(limit=2), BEN)["photos"]) == ["00.jpg", "01.jpg"]
    # and ana's decision on the photo ben now holds is refused
    with pytest.raises(Conflict, match=r"held by ben@example\.com"):
        service.decide(held[1]["id"], {"decision": "confirm", "token": held[1]["token"]}, ANA)
    # a release of someone else's lease does nothing
    assert service.release({"ids": [held[1]["id"]]}, ANA) == {"released": 0}


def test_a_grid_claim_is_one_label_most_confident_first(account: Account) -> None:
    # Given photos of two labels, oldest a Pool
    for minute, (label, confidence) in enumerate(
        [("Pool", 0.55), ("Room", 0.7), ("Pool", 0.75), ("Pool", 0.62), ("Room", 0.6)]
    ):
        seed_photo(
            account.s3,
            account.dynamodb,
            f"uploads/h1/{minute}.jpg",
            label=label,
            confidence=confidence,
            classified_at=_at(minute),
        )
    status, page = account.call("POST", "/api/claims", body={"limit": 24, "group": True})
    assert status == 200 and page["group_label"] == "Pool"
    assert [(p["label"], p["confidence"]) for p in page["photos"]] == [
        ("Pool", 0.75),
        ("Pool", 0.62),
        ("Pool", 0.55),
    ]
    # the Room photos were not claimed: another reviewer's grid gets them
    _, other = account.call("POST", "/api/claims", body={"limit": 24, "group": True}, claims=OTHER_CLAIMS)
    assert other["group_label"] == "Room" and _names(other["photos"]) == ["1.jpg", "4.jpg"]


# -- filters and counts that do not lie -------------------------------------------------------------------------


def test_a_sparse_filter_reads_on_until_it_finds_its_photo(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one photo of hotel h2 behind 40 of h1, and small index pages (41 items = 11 Queries of 4)
    monkeypatch.setattr(core, "QUERY_PAGE_ITEMS", 4)
    _seed(account, 40)
    _seed(account, 1, hotel="h2", start=50)

    # When the page asks for h2's photos
    status, page = account.call("GET", "/api/photos", query={"hotel": "h2"})

    # Then the first answer holds it (not an empty page beside "1 left"), and the end of the index
    assert status == 200 and _names(page["photos"]) == ["50.jpg"] and page["cursor"] is None
    assert page["remaining"] == {"count": 1, "exact": True} and page["examined"] == 41
    # And a claim with the same filter finds it too
    _, claimed = account.call("POST", "/api/claims", body={"hotel": "h2"})
    assert _names(claimed["photos"]) == ["50.jpg"]


def test_when_the_time_budget_is_spent_the_answer_says_so_and_the_cursor_goes_on(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a slow index (every clock reading a second later), small pages, and the photo far behind
    monkeypatch.setattr(core, "QUERY_PAGE_ITEMS", 2)
    monkeypatch.setattr(core, "COUNT_PAGE_ITEMS", 2)
    _seed(account, 30)
    _seed(account, 1, hotel="h2", start=40)
    service = _service(account, monotonic=Clock().slow)
    labels = Taxonomy.load().labels

    # When the page lists h2's photos with a 3-second budget
    first = service.list(ListQuery.parse({"hotel": "h2"}, labels), budget_seconds=3)

    # Then it stops: no photos, a cursor to continue, and a count marked as a lower bound
    assert first["photos"] == [] and first["cursor"] is not None
    assert first["remaining"]["exact"] is False and first["remaining"]["count"] <= 1
    # and following the cursor reaches the photo
    photos, cursor, calls = [], first["cursor"], 0
    while cursor and not photos:
        page = service.list(ListQuery.parse({"hotel": "h2", "cursor": cursor}, labels), budget_seconds=3)
        photos, cursor, calls = page["photos"], page["cursor"], calls + 1
    assert _names(photos) == ["40.jpg"] and calls > 1


def test_the_time_budgets_fit_the_api_functions_timeout() -> None:
    from review_api.handler import RESPONSE_MARGIN_SECONDS
    from stacks.review.page import API_TIMEOUT_SECONDS

    assert core.LIST_BUDGET_SECONDS + core.COUNT_BUDGET_SECONDS + RESPONSE_MARGIN_SECONDS < API_TIMEOUT_SECONDS
    assert core.BACKLOG_BUDGET_SECONDS < API_TIMEOUT_SECONDS


def test_a_cursor_outside_the_date_range_is_a_400(account: Account) -> None:
    # Given a cursor from an unfiltered listing that ended at 09:01 on 30 November
    _seed(account, 3)
    _, page = account.call("GET", "/api/photos", query={"limit": "2"})
    cursor = page["cursor"]
    assert cursor
    # When it is sent with a date range that starts later: DynamoDB would refuse it (moto ignores it)
    status, body = account.call("GET", "/api/photos", query={"since": "2026-12-01", "cursor": cursor})
    assert status == 400 and "lies outside the date range" in body["message"]
    with pytest.raises(BadRequest, match="outside the date range"):
        ListQuery.parse({"until": "2026-11-29", "cursor": cursor}, Taxonomy.load().labels)
