"""The review page in headless Chromium, served by the local mode against a moto server: decided by keyboard."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from review_api.local import start_local_review
from tests.review_api.review_testkit import BUCKET, REGION, TABLE, read_item, seed_photo
from tests.review_web.pagekit import save_screenshot

pytestmark = pytest.mark.slow


def _wait(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_three_photos_reviewed_by_keyboard_hold_exactly_those_decisions(
    emulated: tuple[str, Any, Any], browser: Any
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    endpoint, s3, dynamodb = emulated
    # Given four uncertain photos (oldest first: a, b, c, d) and one confident one
    colours = {"a": (200, 120, 40), "b": (30, 110, 200), "c": (120, 120, 120), "d": (60, 160, 60)}
    for minute, (name, colour) in enumerate(colours.items()):
        seed_photo(
            s3,
            dynamodb,
            f"uploads/h1/{name}.jpg",
            label="Room",
            confidence=0.4 + minute / 100,
            color=colour,
            classified_at=f"2026-11-30T09:0{minute}:00.000+00:00",
        )
    seed_photo(s3, dynamodb, "uploads/h1/sure.jpg", label="Pool", confidence=0.97, status="LABELED")
    before = {name: read_item(dynamodb, f"s3://{BUCKET}/uploads/h1/{name}.jpg") for name in (*colours, "sure")}

    with start_local_review(table=TABLE, bucket=BUCKET, endpoint_url=endpoint, region=REGION) as server:
        browser.get(server.url)
        _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", "the page")
        text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731
        assert "LOCAL MODE" in text("mode") and text("left") == "4 left"
        # the photo really loaded (a presigned URL of the emulated bucket)
        _wait(
            lambda: browser.execute_script("return document.getElementById('photo').naturalWidth") == 320,
            "the photo to load",
        )
        save_screenshot(browser, "review-single.png")
        keys = ActionChains(browser)

        # When the reviewer confirms a with Enter
        assert text("photo-name") == "uploads/h1/a.jpg"
        keys.send_keys(Keys.ENTER).perform()
        _wait(lambda: text("photo-name") == "uploads/h1/b.jpg", "photo b")
        # corrects b by typing "poo", choosing Pool with Enter
        keys.send_keys("poo").perform()
        _wait(lambda: "Pool" in text("suggestions"), "the Pool suggestion")
        keys.send_keys(Keys.ENTER).perform()
        _wait(lambda: text("photo-name") == "uploads/h1/c.jpg", "photo c")
        # and rejects c with Delete
        keys.send_keys(Keys.DELETE).perform()
        _wait(lambda: text("photo-name") == "uploads/h1/d.jpg", "photo d")

        # Then the table holds exactly those three decisions, made by the local reviewer
        after = {name: read_item(dynamodb, f"s3://{BUCKET}/uploads/h1/{name}.jpg") for name in before}
        decided = {
            name: (item["status"], item["review_decision"], item.get("human_label"), item["reviewed_by"])
            for name, item in after.items()
            if item and "review_decision" in item
        }
        assert decided == {
            "a": ("REVIEWED", "confirm", "Room", "local-reviewer"),
            "b": ("REVIEWED", "correct", "Pool", "local-reviewer"),
            "c": ("REVIEW_REJECTED", "reject", None, "local-reviewer"),
        }
        # d is held for the reviewer (claimed with the batch, not decided), the confident photo untouched
        lease = {"lease_by", "lease_sub", "lease_until"}
        assert after["d"] is not None and after["d"]["lease_by"] == "local-reviewer"
        assert {k: v for k, v in after["d"].items() if k not in lease} == before["d"]
        assert after["sure"] == before["sure"]
        assert all(after[n]["label"] == "Room" for n in "abc")  # the model's answer is kept beside the decision
        assert text("left") == "1 left"

        # When the reviewer presses Ctrl+Z: the last decision (c's reject) is undone and c is shown again
        keys.key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
        _wait(lambda: text("photo-name") == "uploads/h1/c.jpg", "photo c again")
        _wait(lambda: "review_decision" not in read_item(dynamodb, f"s3://{BUCKET}/uploads/h1/c.jpg"), "the undo")
        assert read_item(dynamodb, f"s3://{BUCKET}/uploads/h1/c.jpg") == before["c"]
        assert text("left") == "2 left"


def test_a_photo_deleted_from_the_bucket_shows_why_instead_of_a_broken_image(
    emulated: tuple[str, Any, Any], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    endpoint, s3, dynamodb = emulated
    item = seed_photo(s3, dynamodb, "uploads/h1/gone.jpg")
    s3.delete_object(Bucket=BUCKET, Key="uploads/h1/gone.jpg", VersionId=item["version_id"])
    with start_local_review(table=TABLE, bucket=BUCKET, endpoint_url=endpoint, region=REGION) as server:
        browser.get(server.url)
        problem = _wait(
            lambda: (
                browser.find_element(By.ID, "photo-problem").is_displayed()
                and browser.find_element(By.ID, "photo-problem").text
            ),
            "the photo problem",
        )
        assert "no longer exists in the bucket" in problem
        if os.environ.get("REVIEW_SCREENSHOT"):
            browser.save_screenshot(os.environ["REVIEW_SCREENSHOT"])
