"""The single view in real Chromium: a sparse filter and a queue longer than one claim, keys that cannot decide
blindly (auto-repeat, a held Enter, a photo still loading or failed), and the same keys on a Mac keyboard."""

from __future__ import annotations

import time
from typing import Any

import pytest

from review_api import handler
from review_api.local import start_local_review
from tests.review_api.review_testkit import BUCKET, REGION, TABLE, history_of, read_item, seed_photo
from tests.review_web.pagekit import CTRL, META, Page, slow_proxy, wait

pytestmark = pytest.mark.slow


def _seed(s3: Any, dynamodb: Any, count: int, *, hotel: str = "h1", start: int = 0) -> list[str]:
    names = []
    for minute in range(start, start + count):
        name = f"{hotel}-{minute:02d}.jpg"
        seed_photo(
            s3,
            dynamodb,
            f"uploads/{hotel}/{name}",
            hotel_id=hotel,
            classified_at=f"2026-11-30T09:{minute:02d}:00.000+00:00",
        )
        names.append(name)
    return names


def _decision(dynamodb: Any, name: str) -> str | None:
    hotel = name.split("-")[0]
    item = read_item(dynamodb, f"s3://{BUCKET}/uploads/{hotel}/{name}")
    return item.get("review_decision") if item else None


def _server(endpoint: str, **kwargs: Any) -> Any:
    return start_local_review(table=TABLE, bucket=BUCKET, endpoint_url=endpoint, region=REGION, **kwargs)


def test_a_sparse_filter_shows_its_photo_instead_of_nothing_left(
    emulated: tuple[str, Any, Any], browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, s3, dynamodb = emulated
    # Given one photo of hotel h2 behind 30 of h1, and an API that reads one small index page per request (a
    # large backlog: every request spends its time budget before it reaches h2's photo)
    monkeypatch.setattr("review_api.core.QUERY_PAGE_ITEMS", 2)
    monkeypatch.setattr(handler, "_budget", lambda: 0.0)
    _seed(s3, dynamodb, 30)
    _seed(s3, dynamodb, 1, hotel="h2", start=40)
    with _server(endpoint) as server:
        page = Page(browser).open(server.url)
        # When the reviewer filters on hotel h2
        browser.find_element("id", "f-hotel").send_keys("h2")
        page.driver.execute_script("document.getElementById('filters').requestSubmit()")
        # Then the page reads on through the empty answers and shows the photo, with "1 left"
        page.shows("h2-40.jpg", timeout=30)
        assert page.text("left") == "1 left" and not page.visible("empty")


def test_a_queue_longer_than_one_claim_is_decided_to_the_end(emulated: tuple[str, Any, Any], browser: Any) -> None:
    endpoint, s3, dynamodb = emulated
    names = _seed(s3, dynamodb, 12)  # the page claims 5 at a time
    with _server(endpoint) as server:
        page = Page(browser).open(server.url)
        assert page.text("left") == "12 left"
        # When the reviewer confirms every photo but the fourth, which they skip with →
        for position, name in enumerate(names):
            page.shows(name)
            wait(page.photo_ready, f"{name} to load")
            page.key("ArrowRight" if position == 3 else "Enter")
        # Then the page comes back to the skipped photo instead of "nothing left" beside "1 left"
        page.shows(names[3])
        assert page.text("left") == "1 left" and not page.visible("empty")
        wait(page.photo_ready, "the skipped photo")
        page.key("Enter")
        wait(lambda: page.visible("empty"), "the end of the queue")
        assert page.text("empty") == "Nothing left to review for this filter." and page.text("left") == "0 left"
    assert [_decision(dynamodb, name) for name in names] == ["confirm"] * 12


def test_held_keys_never_decide_a_run_of_photos(emulated: tuple[str, Any, Any], browser: Any) -> None:
    endpoint, s3, dynamodb = emulated
    names = _seed(s3, dynamodb, 4)
    with _server(endpoint) as server:
        page = Page(browser).open(server.url)
        wait(page.photo_ready, "the first photo")
        # When Enter is held down: one keydown, then the keyboard's auto-repeat
        page.key("Enter", up=False)
        page.shows(names[1])
        wait(page.photo_ready, "the second photo")
        for _ in range(5):
            page.key("Enter", repeat=True, up=False)
        # and a keydown that arrives without a release (a keyboard that does not flag repeats)
        page.key("Enter", up=False)
        time.sleep(0.6)
        # Then only the first photo was confirmed
        assert [_decision(dynamodb, name) for name in names] == ["confirm", None, None, None]
        # Released and pressed again: the second is confirmed
        page.release("Enter")
        page.key("Enter")
        page.shows(names[2])
        # Auto-repeat of the reject key decides nothing either
        wait(page.photo_ready, "the third photo")
        page.key("Delete", repeat=True)
        time.sleep(0.6)
        assert [_decision(dynamodb, name) for name in names] == ["confirm", "confirm", None, None]


def test_on_a_mac_delete_rejects_and_command_z_undoes_as_the_page_says(
    emulated: tuple[str, Any, Any], browser: Any
) -> None:
    endpoint, s3, dynamodb = emulated
    names = _seed(s3, dynamodb, 3)
    with _server(endpoint) as server:
        page = Page(browser).open(server.url, platform="MacIntel")
        # The page names the keys printed on a Mac keyboard
        assert "delete reject" in page.text("reject").replace("Reject", "").strip() + " reject"
        assert "⌘Z" in page.driver.find_element("css selector", "footer").text
        wait(page.photo_ready, "the first photo")
        page.key("Enter")
        page.shows(names[1])
        wait(page.photo_ready, "the second photo")
        # When the reviewer presses the key labelled "delete" (it sends Backspace): the photo is rejected, the
        # earlier confirm is not undone
        page.key("Backspace")
        page.shows(names[2])
        assert [_decision(dynamodb, name) for name in names] == ["confirm", "reject", None]
        # ⌘Z undoes the reject
        page.key("z", modifiers=META)
        page.shows(names[1])
        wait(lambda: _decision(dynamodb, names[1]) is None, "the undo")
        assert [e["action"] for e in history_of(dynamodb, f"s3://{BUCKET}/uploads/h1/{names[1]}")] == [
            "decide",
            "undo",
        ]
        # and Ctrl+Z works there too
        wait(page.photo_ready, "the photo again")
        page.key("Backspace")
        page.shows(names[2])
        page.key("z", modifiers=CTRL)
        wait(lambda: _decision(dynamodb, names[1]) is None and "Undone" in page.text("message"), "Ctrl+Z")


def test_confirm_waits_for_a_slow_photo_and_a_photo_that_fails_can_only_be_rejected_or_skipped(
    emulated: tuple[str, Any, Any], browser: Any
) -> None:
    endpoint, s3, dynamodb = emulated
    names = _seed(s3, dynamodb, 3)
    # Photo 0 takes 2.5 s to arrive, photo 1 never loads (the bucket answers 500)
    with (
        slow_proxy(endpoint, slow={names[0]: 2.5}, failing={names[1]}) as proxy,
        _server(proxy) as server,
    ):
        page = Page(browser).open(server.url)
        page.shows(names[0])
        # While it loads, Confirm is disabled and Enter decides nothing
        assert not page.photo_ready() and browser.find_element("id", "confirm").get_attribute("disabled")
        page.key("Enter")
        time.sleep(0.5)
        assert _decision(dynamodb, names[0]) is None and "not loaded yet" in page.text("message")
        # Once it has loaded, Enter confirms it
        wait(page.photo_ready, "the slow photo", timeout=10)
        page.key("Enter")
        page.shows(names[1])
        # The failing photo: the page says so; Confirm and the label search stay disabled, Enter does nothing
        wait(lambda: "could not be loaded" in page.text("photo-problem"), "the failure message")
        assert browser.find_element("id", "confirm").get_attribute("disabled")
        assert browser.find_element("id", "search").get_attribute("disabled")
        page.key("Enter")
        time.sleep(0.5)
        assert _decision(dynamodb, names[1]) is None
        # It can be skipped, or rejected
        page.key("Delete")
        page.shows(names[2])
        assert [_decision(dynamodb, name) for name in names] == ["confirm", "reject", None]
