"""Grid view in real Chromium: a page of one model label, most confident first; the wrong ones corrected or
rejected by click and key, the rest confirmed with one key once every photo has loaded; then the next label."""

from __future__ import annotations

import time
from typing import Any

import pytest

from review_api.local import start_local_review
from tests.review_api.review_testkit import BUCKET, REGION, TABLE, read_item, seed_photo
from tests.review_web.pagekit import Page, save_screenshot, slow_proxy, wait

pytestmark = pytest.mark.slow

# Distinct colours, so the screenshot shows photos rather than one flat tile.
COLOURS = [(214, 96, 77), (66, 135, 245), (80, 170, 110), (240, 190, 60), (150, 90, 200), (60, 180, 190)]


def _tiles(page: Page) -> list[str]:
    return page.driver.execute_script(
        "return [...document.querySelectorAll('#tiles .tile-caption')].map(e => e.textContent)"
    )


def _click_tile(page: Page, position: int) -> None:
    page.driver.execute_script("document.querySelectorAll('#tiles .tile')[arguments[0]].click()", position)


def test_a_grid_page_is_corrected_where_wrong_and_confirmed_with_one_key(
    emulated: tuple[str, Any, Any], browser: Any
) -> None:
    endpoint, s3, dynamodb = emulated
    # Given eight photos the model called Pool with different confidences (oldest first), and three Room photos
    confidences = [0.41, 0.77, 0.52, 0.69, 0.45, 0.73, 0.58, 0.64]
    for minute, confidence in enumerate(confidences):
        seed_photo(
            s3,
            dynamodb,
            f"uploads/h1/pool-{minute}.jpg",
            label="Pool",
            confidence=confidence,
            color=COLOURS[minute % len(COLOURS)],
            classified_at=f"2026-11-30T09:0{minute}:00.000+00:00",
        )
    for minute in range(3):
        seed_photo(
            s3,
            dynamodb,
            f"uploads/h1/room-{minute}.jpg",
            label="Room",
            confidence=0.5,
            color=COLOURS[-1 - minute],
            classified_at=f"2026-11-30T10:0{minute}:00.000+00:00",
        )
    # and one Pool photo that takes 2 s to arrive
    with (
        slow_proxy(endpoint, slow={"pool-3.jpg": 2.0}) as proxy,
        start_local_review(table=TABLE, bucket=BUCKET, endpoint_url=proxy, region=REGION) as server,
    ):
        page = Page(browser).open(server.url)
        page.click("view-grid")

        # Then the grid shows the Pool photos, most confident first
        wait(lambda: len(_tiles(page)) == 8, "eight tiles")
        assert page.text("grid-title") == "Pool · 8 photos, most confident first"
        shown = [int(caption.split("%")[0]) for caption in _tiles(page)]
        assert shown == sorted((round(c * 100) for c in confidences), reverse=True)
        # and Confirm waits for the slow photo: Enter before it has loaded confirms nothing
        assert page.body("gridReady") == "false"
        page.key("Enter")
        time.sleep(0.4)
        assert read_item(dynamodb, f"s3://{BUCKET}/uploads/h1/pool-0.jpg").get("review_decision") is None  # type: ignore[union-attr]
        wait(lambda: page.body("gridReady") == "true", "every tile to load")
        save_screenshot(browser, "review-grid.png")

        # When the reviewer clicks the third tile and types Lobby, and rejects the sixth with Delete
        captions = _tiles(page)
        lobby = captions[2].split("· ")[1]
        rejected = captions[5].split("· ")[1]
        _click_tile(page, 2)
        page.type("lob")
        wait(lambda: "Lobby" in page.text("grid-suggestions"), "the Lobby suggestion")
        page.key("Enter")
        wait(lambda: "Corrected to Lobby" in page.text("grid-message"), "the correction")
        _click_tile(page, 5)
        page.key("Delete")
        wait(lambda: page.text("grid-message") == "Rejected.", "the rejection")
        # and confirms the rest with one key
        page.key("Enter")

        # Then the next page is the Room photos
        wait(lambda: page.text("grid-title").startswith("Room · 3 photos"), "the Room page")
        items = {
            name: read_item(dynamodb, f"s3://{BUCKET}/uploads/h1/pool-{n}.jpg")
            for n, name in enumerate(f"pool-{n}.jpg" for n in range(8))
        }
        decisions = {
            name: (item["review_decision"], item.get("human_label")) for name, item in items.items() if item
        }
        assert decisions.pop(lobby) == ("correct", "Lobby")
        assert decisions.pop(rejected) == ("reject", None)
        assert set(decisions.values()) == {("confirm", "Pool")} and len(decisions) == 6
        assert page.text("left") == "3 left"
        room = read_item(dynamodb, f"s3://{BUCKET}/uploads/h1/room-0.jpg")
        assert room is not None and "review_decision" not in room and room["lease_by"] == "local-reviewer"
