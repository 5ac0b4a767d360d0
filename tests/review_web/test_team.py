"""Two and three reviewers in real Chromium against one emulated table: no decision lost or overwritten, a lead's
deliberate override kept in the history, and leases that hand each reviewer photos nobody else holds."""

from __future__ import annotations

import time
from typing import Any

import pytest

from review_api.local import start_local_review
from tests.review_api.review_testkit import BUCKET, REGION, TABLE, history_of, read_item, seed_photo
from tests.review_web.pagekit import Page, wait

pytestmark = pytest.mark.slow
URI = f"s3://{BUCKET}/uploads/h1/a.jpg"


def _server(endpoint: str, reviewer: str, groups: tuple[str, ...] = ("reviewers",), **kwargs: Any) -> Any:
    return start_local_review(
        table=TABLE,
        bucket=BUCKET,
        endpoint_url=endpoint,
        region=REGION,
        reviewer=reviewer,
        groups=groups,
        **kwargs,
    )


def test_two_reviewers_on_one_photo_no_overwrite_and_a_leads_override_is_kept_in_the_history(
    emulated: tuple[str, Any, Any], browsers: Any
) -> None:
    endpoint, s3, dynamodb = emulated
    seed_photo(s3, dynamodb, "uploads/h1/a.jpg", label="Room", confidence=0.41)
    # Leases of 2 s, so both reviewers get the photo (ben's lease ends before ana asks for work)
    with (
        _server(endpoint, "ben@example.com", lease_seconds=2) as ben_server,
        _server(endpoint, "ana@example.com", lease_seconds=2) as ana_server,
        _server(endpoint, "lea@example.com", ("reviewers", "leads")) as lea_server,
    ):
        ben = Page(browsers()).open(ben_server.url)
        wait(ben.photo_ready, "ben's photo")
        time.sleep(2.2)
        ana = Page(browsers()).open(ana_server.url)
        wait(ana.photo_ready, "ana's photo")

        # When ana corrects the photo to Spa
        ana.type("spa")
        wait(lambda: "Spa" in ana.text("suggestions"), "the Spa suggestion")
        ana.key("Enter")
        wait(lambda: "Corrected to Spa" in ana.text("message"), "ana's decision")

        # and ben confirms what he was shown: not saved, and his page moves on
        ben.key("Enter")
        wait(lambda: "Not saved: already decided by ana@example.com" in ben.text("message"), "ben's 409")
        wait(lambda: not ben.visible("photo"), "ben's page to move on")
        # ben presses Enter again: nothing is sent for that photo any more
        ben.key("Enter")
        time.sleep(0.5)

        # Then the table holds ana's decision, and the history one entry
        item = read_item(dynamodb, URI)
        assert item is not None and (item["human_label"], item["reviewed_by"]) == ("Spa", "ana@example.com")
        assert [entry["by"] for entry in history_of(dynamodb, URI)] == ["ana@example.com"]

        # When lea (a lead) opens the reviewed photos: Enter does nothing until she presses Override
        lea = Page(browsers()).open(lea_server.url)
        lea.driver.execute_script("document.getElementById('f-status').value = 'REVIEWED'")
        lea.driver.execute_script("document.getElementById('filters').requestSubmit()")
        wait(lambda: "Corrected to Spa by ana@example.com" in lea.text("decided"), "ana's decision on lea's page")
        wait(lea.photo_ready, "lea's photo")
        lea.key("Enter")
        wait(lambda: "press Override first" in lea.text("message"), "the override hint")
        assert read_item(dynamodb, URI)["reviewed_by"] == "ana@example.com"  # type: ignore[index]
        lea.click("override")
        lea.type("pool")
        wait(lambda: "Pool" in lea.text("suggestions"), "the Pool suggestion")
        lea.key("Enter")
        wait(lambda: "Corrected to Pool" in lea.text("message"), "lea's override")

        # Then the photo holds lea's label, and the history both decisions, the second replacing the first
        item = read_item(dynamodb, URI)
        assert item is not None and (item["human_label"], item["reviewed_by"]) == ("Pool", "lea@example.com")
        entries = history_of(dynamodb, URI)
        assert [(e["action"], e["by"], e.get("human_label")) for e in entries] == [
            ("decide", "ana@example.com", "Spa"),
            ("override", "lea@example.com", "Pool"),
        ]
        assert entries[1]["replaced"]["human_label"] == "Spa"
        # and the history is on the page: back to the photo, open History
        lea.key("z", modifiers=2)  # Ctrl+Z: lea undoes her override, ana's decision returns
        wait(lambda: "Undone" in lea.text("message"), "lea's undo")
        assert read_item(dynamodb, URI)["human_label"] == "Spa"  # type: ignore[index]
        lea.driver.execute_script("const h = document.getElementById('history'); h.open = true")
        wait(lambda: "undid #2" in lea.text("history-list"), "the history on the page")
        assert "override: correct Pool" in lea.text("history-list")


def test_leases_give_two_reviewers_disjoint_work_and_nobody_decides_a_photo_twice(
    emulated: tuple[str, Any, Any], browsers: Any
) -> None:
    endpoint, s3, dynamodb = emulated
    names = [f"{n:02d}" for n in range(8)]
    for minute, name in enumerate(names):
        seed_photo(
            s3, dynamodb, f"uploads/h1/{name}.jpg", classified_at=f"2026-11-30T09:{minute:02d}:00.000+00:00"
        )
    with _server(endpoint, "ana@example.com") as ana_server, _server(endpoint, "ben@example.com") as ben_server:
        ana = Page(browsers()).open(ana_server.url)
        ben = Page(browsers()).open(ben_server.url)
        # Each page shows a photo the other does not hold, and says it is held for them
        wait(ana.photo_ready, "ana's photo")
        wait(ben.photo_ready, "ben's photo")
        assert ana.text("photo-name") != ben.text("photo-name")
        assert ana.text("lease").startswith("Held for you until")

        # When both confirm everything they are given, alternately
        decided: dict[str, int] = {"ana": 0, "ben": 0}
        for _ in range(12):
            for who, page in (("ana", ana), ("ben", ben)):
                if page.visible("photo"):
                    wait(page.photo_ready, f"{who}'s photo")
                    shown = page.text("photo-name")
                    page.key("Enter")
                    wait(lambda p=page, s=shown: p.text("photo-name") != s or not p.visible("photo"), "next")
                    decided[who] += 1
            if not ana.visible("photo") and not ben.visible("photo"):
                break

        # Then every photo was decided exactly once, by the reviewer who held it, with no conflict
        items = {name: read_item(dynamodb, f"s3://{BUCKET}/uploads/h1/{name}.jpg") for name in names}
        assert all(item and item["review_decision"] == "confirm" for item in items.values())
        assert all(len(history_of(dynamodb, f"s3://{BUCKET}/uploads/h1/{n}.jpg")) == 1 for n in names)
        assert decided["ana"] + decided["ben"] == len(names) and min(decided.values()) > 0
        assert "Not saved" not in ana.text("message") + ben.text("message")
        wait(lambda: ana.text("left") == "0 left" or ben.text("left") == "0 left", "the count to reach 0")
