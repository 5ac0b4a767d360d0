"""The review API in-process on moto, through the Lambda handler exactly as API Gateway invokes it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from review_api import core
from review_api.inputs import photo_id
from tests.review_api.review_testkit import (
    ANA_SUB,
    BUCKET,
    OTHER_CLAIMS,
    REGION,
    TABLE,
    Account,
    FakeContext,
    read_item,
    seed_photo,
)


def _at(minute: int) -> str:
    return f"2026-11-30T09:{minute:02d}:00.000+00:00"


def _queue(account: Account, **query: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every page of a listing, following the cursor; (photos, first page)."""
    photos: list[dict[str, Any]] = []
    first: dict[str, Any] | None = None
    cursor = None
    for _ in range(50):
        status, page = account.call(
            "GET", "/api/photos", query={**query, **({"cursor": cursor} if cursor else {})}
        )
        assert status == 200, page
        first = first or page
        photos += page["photos"]
        cursor = page["cursor"]
        if not cursor:
            return photos, first
    raise AssertionError("the cursor never ended")


def test_the_queue_pages_through_the_status_index_oldest_first_with_n_left(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 7 uncertain photos, 2 confident ones, and small DynamoDB pages (so one request spans several Queries)
    monkeypatch.setattr(core, "QUERY_PAGE_ITEMS", 2)
    for minute in (5, 1, 3, 7, 2, 6, 4):
        seed_photo(account.s3, account.dynamodb, f"uploads/h1/{minute}.jpg", classified_at=_at(minute))
    for minute in (0, 8):
        seed_photo(
            account.s3,
            account.dynamodb,
            f"uploads/h1/ok{minute}.jpg",
            status="LABELED",
            confidence=0.97,
            classified_at=_at(minute),
        )

    # When the default queue is read 3 at a time
    photos, first = _queue(account, limit="3")

    # Then every NEEDS_REVIEW photo comes once, oldest first, and the first page says how many are left
    assert [p["image_uri"].rsplit("/", 1)[1] for p in photos] == [f"{m}.jpg" for m in range(1, 8)]
    assert first["remaining"] == {"count": 7, "exact": True}
    assert len(first["photos"]) == 3
    # and newest first reverses it
    newest, _ = _queue(account, limit="4", order="newest")
    assert [p["classified_at"] for p in newest] == [_at(m) for m in range(7, 0, -1)]


def test_filters_narrow_the_queue_and_the_count(account: Account) -> None:
    # Given photos of two hotels, labels, confidences and days
    seed_photo(
        account.s3, account.dynamodb, "uploads/h1/a.jpg", label="Room", confidence=0.30, classified_at=_at(1)
    )
    seed_photo(
        account.s3, account.dynamodb, "uploads/h1/b.jpg", label="Pool", confidence=0.55, classified_at=_at(2)
    )
    seed_photo(
        account.s3,
        account.dynamodb,
        "uploads/h2/c.jpg",
        label="Pool",
        confidence=0.65,
        hotel_id="h2",
        classified_at="2026-12-01T08:00:00.000+00:00",
    )
    seed_photo(
        account.s3,
        account.dynamodb,
        "uploads/h2/d.jpg",
        label="Room",
        confidence=0.99,
        hotel_id="h2",
        status="LABELED",
        classified_at=_at(3),
    )

    def names(**query: str) -> list[str]:
        photos, first = _queue(account, **query)
        assert first["remaining"]["count"] == len(photos)
        return [p["image_uri"].rsplit("/", 1)[1] for p in photos]

    # Then each filter keeps exactly the matching photos
    assert names(hotel="h2") == ["c.jpg"]
    assert names(label="Pool") == ["b.jpg", "c.jpg"]
    assert names(min_confidence="0.5", max_confidence="0.6") == ["b.jpg"]
    assert names(since="2026-12-01") == ["c.jpg"]
    assert names(until="2026-11-30") == ["a.jpg", "b.jpg"]
    assert names(status="LABELED", hotel="h2") == ["d.jpg"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"status": "DONE"}, "status must be one of"),
        ({"label": "Sauna room"}, "not in the taxonomy"),
        ({"min_confidence": "high"}, "min_confidence must be a number"),
        ({"min_confidence": "0.9", "max_confidence": "0.2"}, "above max_confidence"),
        ({"since": "yesterday"}, "since must be a date"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "since 2026-12-02 is after until 2026-12-01"),
        ({"limit": "1000"}, "limit must be 1..100"),
        ({"cursor": "not-a-cursor"}, "cursor is malformed"),
    ],
)
def test_a_bad_listing_parameter_is_a_400_naming_it(account: Account, query: dict[str, str], message: str) -> None:
    status, body = account.call("GET", "/api/photos", query=query)
    assert status == 400
    assert message in body["message"]


def test_each_photo_links_the_exact_labelled_version_for_a_few_minutes(account: Account) -> None:
    # Given a photo labelled at version 1 and then replaced in the bucket
    item = seed_photo(account.s3, account.dynamodb, "uploads/h1/v.jpg")
    account.s3.put_object(Bucket=BUCKET, Key="uploads/h1/v.jpg", Body=b"replacement")
    # When the queue is read
    _, first = _queue(account)
    url = urlparse(first["photos"][0]["photo_url"])
    query = parse_qs(url.query)
    # Then the URL is presigned (SigV4, 300 s) for the labelled version, and fetching it gives that version
    assert query["versionId"] == [item["version_id"]]
    assert query["X-Amz-Expires"] == ["300"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    # on a host the page's Content-Security-Policy admits (stacks/review/page.py, img-src)
    assert url.netloc in {f"{BUCKET}.s3.{REGION}.amazonaws.com", f"{BUCKET}.s3.amazonaws.com"}
    fetched = account.s3.get_object(Bucket=BUCKET, Key="uploads/h1/v.jpg", VersionId=query["versionId"][0])
    assert fetched["ETag"].strip('"') == item["etag"]


def test_confirm_correct_and_reject_are_stored_with_who_and_when_beside_the_models_result(
    account: Account,
) -> None:
    # Given three uncertain photos as the page shows them
    for name in ("a", "b", "c"):
        seed_photo(account.s3, account.dynamodb, f"uploads/h1/{name}.jpg", label="Room", confidence=0.4)
    photos, _ = _queue(account)
    shown = {p["image_uri"].rsplit("/", 1)[1]: p for p in photos}

    # When a reviewer confirms a, corrects b to Pool and rejects c
    answers = {
        "a.jpg": {"decision": "confirm"},
        "b.jpg": {"decision": "correct", "label": "Pool"},
        "c.jpg": {"decision": "reject"},
    }
    for name, body in answers.items():
        status, view = account.call(
            "POST", f"/api/photos/{shown[name]['id']}/decision", body={**body, "token": shown[name]["token"]}
        )
        assert status == 200, view
        assert view["reviewed_by"] == "ana@example.com"

    # Then each item holds the decision, who and when, and the model's label and confidence unchanged
    items = {name: read_item(account.dynamodb, shown[name]["image_uri"]) for name in answers}
    expected = {
        "a.jpg": ("REVIEWED", "confirm", "Room"),
        "b.jpg": ("REVIEWED", "correct", "Pool"),
        "c.jpg": ("REVIEW_REJECTED", "reject", None),
    }
    for name, (status, decision, human_label) in expected.items():
        item = items[name]
        assert item is not None
        assert (item["status"], item["review_decision"], item.get("human_label")) == (
            status,
            decision,
            human_label,
        )
        assert item["reviewed_by"] == "ana@example.com" and item["reviewed_by_sub"] == ANA_SUB
        assert item["reviewed_at"].startswith("20") and item["status_before_review"] == "NEEDS_REVIEW"
        assert (item["label"], float(item["confidence"]), item["model"]) == ("Room", 0.4, "llava-next-hotel-v1")
    # and they have left the NEEDS_REVIEW queue
    assert _queue(account)[0] == []


def test_a_stale_decision_is_a_409_naming_who_decided_first(account: Account) -> None:
    # Given two reviewers who loaded the same photo
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    shown = _queue(account)[0][0]
    status, _ = account.call(
        "POST",
        f"/api/photos/{shown['id']}/decision",
        body={"decision": "correct", "label": "Spa", "token": shown["token"]},
    )
    assert status == 200

    # When the second reviewer decides on what they were shown
    status, body = account.call(
        "POST",
        f"/api/photos/{shown['id']}/decision",
        body={"decision": "confirm", "token": shown["token"]},
        claims=OTHER_CLAIMS,
    )

    # Then nothing is overwritten and the answer says who decided what
    assert status == 409
    assert "already decided by ana@example.com" in body["message"] and "correct as Spa" in body["message"]
    assert body["current"]["human_label"] == "Spa"
    assert read_item(account.dynamodb, shown["image_uri"])["reviewed_by"] == "ana@example.com"  # type: ignore[index]


def test_a_decision_on_a_photo_the_model_relabelled_meanwhile_is_a_409(account: Account) -> None:
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    shown = _queue(account)[0][0]
    # The labeller rewrote the item (new version or model) after the page loaded it
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg", label="Bar", classified_at=_at(30))
    status, body = account.call(
        "POST", f"/api/photos/{shown['id']}/decision", body={"decision": "confirm", "token": shown["token"]}
    )
    assert status == 409
    assert "re-labelled this photo" in body["message"] and "Bar" in body["message"]
    assert "review_decision" not in read_item(account.dynamodb, shown["image_uri"])  # type: ignore[operator]


def test_bad_decisions_are_400_and_write_nothing(account: Account) -> None:
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    seed_photo(
        account.s3,
        account.dynamodb,
        "uploads/h1/nolabel.jpg",
        label=None,
        confidence=None,
        status="REJECTED",
        classified_at=_at(2),
    )
    shown = _queue(account)[0][0]
    rejected = _queue(account, status="REJECTED")[0][0]
    path = f"/api/photos/{shown['id']}/decision"
    cases = [
        (path, {"decision": "correct", "label": "Penthouse", "token": shown["token"]}, "not in the taxonomy"),
        (path, {"decision": "correct", "token": shown["token"]}, "not in the taxonomy"),
        (path, {"decision": "approve", "token": shown["token"]}, "decision must be one of"),
        (path, {"decision": "confirm"}, "'token' is required"),
        (path, {"decision": "confirm", "token": "garbage!"}, "token is malformed"),
        (path, {"decision": "reject", "label": "Pool", "token": shown["token"]}, "only sent with decision"),
        (
            f"/api/photos/{rejected['id']}/decision",
            {"decision": "confirm", "token": rejected["token"]},
            "no model label to confirm",
        ),
        ("/api/photos/%%%/decision", {"decision": "reject", "token": shown["token"]}, "photo id"),
    ]
    for target, body, message in cases:
        status, answer = account.call("POST", target, body=body)
        assert (status, message in answer["message"]) == (400, True), (body, answer)
    assert "review_decision" not in read_item(account.dynamodb, shown["image_uri"])  # type: ignore[operator]


def test_a_photo_gone_from_the_bucket_or_the_table_is_a_clear_state(account: Account) -> None:
    # Given a photo whose labelled version was deleted, and one whose item was deleted after the page loaded
    gone = seed_photo(account.s3, account.dynamodb, "uploads/h1/gone.jpg", classified_at=_at(1))
    dropped = seed_photo(account.s3, account.dynamodb, "uploads/h1/dropped.jpg", classified_at=_at(2))
    shown = {p["image_uri"]: p for p in _queue(account)[0]}
    account.s3.delete_object(Bucket=BUCKET, Key="uploads/h1/gone.jpg", VersionId=gone["version_id"])
    account.dynamodb.delete_item(TableName=TABLE, Key={"image_uri": {"S": dropped["image_uri"]}})

    # When the page asks for their state (what it does when a photo fails to load) and decides anyway
    status, view = account.call("GET", f"/api/photos/{shown[gone['image_uri']]['id']}")
    missing_status, missing = account.call("GET", f"/api/photos/{shown[dropped['image_uri']]['id']}")
    decided, answer = account.call(
        "POST",
        f"/api/photos/{shown[dropped['image_uri']]['id']}/decision",
        body={"decision": "reject", "token": shown[dropped["image_uri"]]["token"]},
    )

    # Then the first says the photo no longer exists (no URL), the second that its item is gone
    assert status == 200 and view["photo_url"] is None
    assert "no longer exists in the bucket" in view["photo_problem"]
    assert missing_status == 404 and "not in the labels table" in missing["message"]
    assert decided == 404 and "not in the labels table" in answer["message"]
    # and a gone photo can still be rejected
    status, _ = account.call(
        "POST", f"/api/photos/{view['id']}/decision", body={"decision": "reject", "token": view["token"]}
    )
    assert status == 200


def test_a_photo_outside_the_upload_prefix_gets_no_url(account: Account) -> None:
    seed_photo(account.s3, account.dynamodb, "archive/h1/old.jpg")
    photo = _queue(account)[0][0]
    assert photo["photo_url"] is None and "outside s3://hotel-photos/uploads/" in photo["photo_problem"]


def test_undo_restores_the_models_result_and_only_the_decider_may_undo(account: Account) -> None:
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    before = read_item(account.dynamodb, f"s3://{BUCKET}/uploads/h1/a.jpg")
    shown = _queue(account)[0][0]
    _, decided = account.call(
        "POST",
        f"/api/photos/{shown['id']}/decision",
        body={"decision": "correct", "label": "Lobby", "token": shown["token"]},
    )

    # When another reviewer tries to undo it, then the decider does
    other, refused = account.call(
        "POST", f"/api/photos/{shown['id']}/undo", body={"token": decided["token"]}, claims=OTHER_CLAIMS
    )
    status, undone = account.call("POST", f"/api/photos/{shown['id']}/undo", body={"token": decided["token"]})

    # Then only the decider's undo counts, and the item is exactly what the model wrote
    assert other == 409 and "only the reviewer who decided" in refused["message"]
    assert status == 200 and undone["status"] == "NEEDS_REVIEW"
    assert read_item(account.dynamodb, shown["image_uri"]) == before
    assert [p["id"] for p in _queue(account)[0]] == [shown["id"]]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/photos", None),
        ("GET", "/api/labels", None),
        ("GET", "/api/me", None),
        ("GET", f"/api/photos/{photo_id('s3://hotel-photos/uploads/h1/a.jpg')}", None),
        ("POST", f"/api/photos/{photo_id('s3://hotel-photos/uploads/h1/a.jpg')}/decision", {"decision": "reject"}),
        ("POST", f"/api/photos/{photo_id('s3://hotel-photos/uploads/h1/a.jpg')}/undo", {"token": "x"}),
    ],
)
def test_a_request_without_the_authorizers_claims_is_refused(
    account: Account, method: str, path: str, body: Any
) -> None:
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    status, answer = account.call(method, path, body=body, claims=None)
    assert status == 401 and "no authorizer claims" in answer["message"]
    assert "review_decision" not in read_item(account.dynamodb, f"s3://{BUCKET}/uploads/h1/a.jpg")  # type: ignore[operator]


def test_labels_lists_every_taxonomy_label_for_the_type_ahead(account: Account) -> None:
    from classification.contract import Taxonomy

    status, body = account.call("GET", "/api/labels")
    assert status == 200 and body["labels"] == list(Taxonomy.load().labels)


def test_decisions_and_the_scheduled_backlog_probe_emit_emf_metrics(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    from review_api import handler

    for minute in range(3):
        seed_photo(account.s3, account.dynamodb, f"uploads/h1/{minute}.jpg", classified_at=_at(minute))
    shown = _queue(account)[0][0]
    capsys.readouterr()
    account.call(
        "POST", f"/api/photos/{shown['id']}/decision", body={"decision": "confirm", "token": shown["token"]}
    )
    result = handler.lambda_handler({"source": "aws.events", "detail-type": "Scheduled Event"}, FakeContext())
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values = {
        m["Name"]: blob[m["Name"]] for blob in blobs for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert result == {"backlog": 2, "exact": True}
    assert values["ReviewDecisions"] in (1.0, [1.0]) and values["ReviewBacklog"] in (2.0, [2.0])
    by_kind = [blob for blob in blobs if "ReviewDecisionsByKind" in blob]
    assert by_kind and by_kind[0]["decision"] == "confirm" and by_kind[0]["service"] == "photo-review"
    assert all(blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "HotelPhotos" for blob in blobs)
