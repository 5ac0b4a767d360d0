"""No decision lost or overwritten: conflicts, a lead's override, undo that restores what it replaced, and the
append-only history of every change. Through the Lambda handler on moto."""

from __future__ import annotations

from typing import Any

from tests.review_api.review_testkit import (
    BUCKET,
    LEAD_CLAIMS,
    OTHER_CLAIMS,
    Account,
    history_of,
    read_item,
    seed_photo,
)

URI = f"s3://{BUCKET}/uploads/h1/a.jpg"


def _shown(account: Account, **query: str) -> dict[str, Any]:
    status, page = account.call("GET", "/api/photos", query=query or None)
    assert status == 200, page
    return page["photos"][0]


def _decide(account: Account, photo: dict[str, Any], claims: dict[str, str] | None = None, **body: Any):
    kwargs = {"claims": claims} if claims is not None else {}
    return account.call("POST", f"/api/photos/{photo['id']}/decision", body={**body}, **kwargs)


def test_after_a_conflict_the_fresh_token_does_not_let_the_loser_overwrite(account: Account) -> None:
    # Given ana and ben were shown the same photo; ana corrects it to Spa
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    shown = _shown(account)
    assert _decide(account, shown, decision="correct", label="Spa", token=shown["token"])[0] == 200

    # When ben confirms with what he was shown: 409, and the answer carries the photo's current state
    status, body = _decide(account, shown, OTHER_CLAIMS, decision="confirm", token=shown["token"])
    assert status == 409 and "already decided by ana@example.com" in body["message"]
    # and ben presses Enter again with the winner's fresh token (what the page did before)
    status, again = _decide(account, shown, OTHER_CLAIMS, decision="confirm", token=body["current"]["token"])

    # Then he is refused again: a photo someone else decided needs an explicit override, which he may not make
    assert status == 409 and "only a lead may override it" in again["message"]
    item = read_item(account.dynamodb, URI)
    assert item is not None and (item["human_label"], item["reviewed_by"]) == ("Spa", "ana@example.com")
    # nor can he force it
    status, forced = _decide(
        account, shown, OTHER_CLAIMS, decision="confirm", token=body["current"]["token"], override=True
    )
    assert status == 403 and "only the leads group may override" in forced["message"]
    assert [entry["by"] for entry in history_of(account.dynamodb, URI)] == ["ana@example.com"]


def test_a_lead_overrides_deliberately_and_the_history_keeps_both_decisions(account: Account) -> None:
    # Given ana's correction to Spa
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    shown = _shown(account)
    _, decided = _decide(account, shown, decision="correct", label="Spa", token=shown["token"])

    # When a lead decides it without asking to override, then with override
    status, refused = _decide(
        account, decided, LEAD_CLAIMS, decision="correct", label="Pool", token=decided["token"]
    )
    assert status == 409 and "press Override to replace it" in refused["message"]
    status, overridden = _decide(
        account, decided, LEAD_CLAIMS, decision="correct", label="Pool", token=decided["token"], override=True
    )

    # Then the photo holds the lead's decision, and the history both, the second naming what it replaced
    assert status == 200 and (overridden["human_label"], overridden["reviewed_by"]) == ("Pool", "lea@example.com")
    first, second = history_of(account.dynamodb, URI)
    assert (first["seq"], first["action"], first["human_label"], first["replaced"]) == (
        1,
        "decide",
        "Spa",
        {"status": "NEEDS_REVIEW"},
    )
    assert (second["seq"], second["action"], second["by"], second["human_label"]) == (
        2,
        "override",
        "lea@example.com",
        "Pool",
    )
    assert second["replaced"]["by"] == "ana@example.com" and second["replaced"]["human_label"] == "Spa"
    # And the history route shows it to any reviewer
    status, history = account.call("GET", f"/api/photos/{shown['id']}/history")
    assert status == 200 and [entry["action"] for entry in history["history"]] == ["decide", "override"]


def test_undo_of_an_override_restores_the_earlier_decision_never_erases_it(account: Account) -> None:
    # Given ana's decision overridden by a lead
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    shown = _shown(account)
    _, decided = _decide(account, shown, decision="confirm", token=shown["token"])
    _, overridden = _decide(
        account, decided, LEAD_CLAIMS, decision="reject", token=decided["token"], override=True
    )

    # When ana tries to undo (not the latest change any more), then the lead undoes the override
    status, refused = account.call("POST", f"/api/photos/{shown['id']}/undo", body={"token": overridden["token"]})
    assert status == 409 and "only the reviewer who decided can undo" in refused["message"]
    status, undone = account.call(
        "POST", f"/api/photos/{shown['id']}/undo", body={"token": overridden["token"]}, claims=LEAD_CLAIMS
    )

    # Then ana's decision is back exactly as it was, and the undo is an entry too
    assert status == 200
    item = read_item(account.dynamodb, URI)
    assert item is not None
    assert (item["status"], item["review_decision"], item["human_label"], item["reviewed_by"]) == (
        "REVIEWED",
        "confirm",
        "Room",
        "ana@example.com",
    )
    assert item["reviewed_at"] == decided["reviewed_at"] and undone["decision"] == "confirm"
    actions = [(entry["seq"], entry["action"], entry["by"]) for entry in history_of(account.dynamodb, URI)]
    assert actions == [
        (1, "decide", "ana@example.com"),
        (2, "override", "lea@example.com"),
        (3, "undo", "lea@example.com"),
    ]
    assert history_of(account.dynamodb, URI)[2]["undoes"] == 2
    # and the lead cannot take back ana's decision with another undo
    status, again = account.call(
        "POST", f"/api/photos/{shown['id']}/undo", body={"token": undone["token"]}, claims=LEAD_CLAIMS
    )
    assert status == 409 and "only the reviewer who decided can undo" in again["message"]


def test_a_reviewer_cannot_re_decide_and_undo_someone_elses_reviewed_photo(account: Account) -> None:
    # The defect: ben re-decided ana's REVIEWED photo from the REVIEWED queue, then undid, erasing her decision
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    shown = _shown(account)
    _decide(account, shown, decision="correct", label="Spa", token=shown["token"])
    reviewed = _shown(account, status="REVIEWED")

    status, body = _decide(account, reviewed, OTHER_CLAIMS, decision="confirm", token=reviewed["token"])

    assert status == 409 and "already decided by ana@example.com" in body["message"]
    item = read_item(account.dynamodb, URI)
    assert item is not None and (item["human_label"], item["reviewed_by"]) == ("Spa", "ana@example.com")


def test_changing_ones_own_mind_is_a_decision_and_undo_steps_back_one_change(account: Account) -> None:
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    before = read_item(account.dynamodb, URI)
    shown = _shown(account)
    _, first = _decide(account, shown, decision="confirm", token=shown["token"])
    status, second = _decide(account, first, decision="correct", label="Lobby", token=first["token"])
    assert status == 200 and second["human_label"] == "Lobby"
    # undo returns to the confirm, and then to the model's result
    _, back = account.call("POST", f"/api/photos/{shown['id']}/undo", body={"token": second["token"]})
    assert back["decision"] == "confirm" and back["human_label"] == "Room"
    # (the confirm is no longer the latest change: deciding again is the way forward)
    status, _ = account.call("POST", f"/api/photos/{shown['id']}/undo", body={"token": back["token"]})
    assert status == 409
    assert [e["action"] for e in history_of(account.dynamodb, URI)] == ["decide", "decide", "undo"]
    assert read_item(account.dynamodb, URI)["status_before_review"] == before["status"]  # type: ignore[index]


def test_a_grid_page_is_confirmed_in_one_request_each_photo_on_its_own(account: Account) -> None:
    # Given three photos, one of which ben decided meanwhile
    for minute in range(3):
        seed_photo(
            account.s3,
            account.dynamodb,
            f"uploads/h1/{minute}.jpg",
            classified_at=f"2026-11-30T09:0{minute}:00.000+00:00",
        )
    _, page = account.call("GET", "/api/photos")
    photos = page["photos"]
    _decide(account, photos[1], OTHER_CLAIMS, decision="reject", token=photos[1]["token"])

    status, result = account.call(
        "POST",
        "/api/decisions",
        body={"decisions": [{"id": p["id"], "decision": "confirm", "token": p["token"]} for p in photos]},
    )

    assert status == 200 and result["saved"] == 2
    assert [r["ok"] for r in result["results"]] == [True, False, True]
    assert result["results"][1]["status"] == 409 and "ben@example.com" in result["results"][1]["message"]
    assert read_item(account.dynamodb, photos[1]["image_uri"])["review_decision"] == "reject"  # type: ignore[index]
    # an override is never part of a batch
    status, body = account.call(
        "POST",
        "/api/decisions",
        body={"decisions": [{"id": photos[1]["id"], "decision": "confirm", "override": True, "token": "x"}]},
    )
    assert status == 400 and "one photo at a time" in body["message"]
