"""The review page in headless Chromium, served by the local mode against a moto server: decided by keyboard."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from local_aws.emulation import create_labels_table
from review_api.local import start_local_review
from tests.review_api.review_testkit import BUCKET, REGION, TABLE, read_item, seed_photo

pytestmark = pytest.mark.slow


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any, Any]]:
    """A moto server (what the demo runs) with the versioned photo bucket and the labels table."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_METRICS_NAMESPACE": "HotelPhotos",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's backends are process-wide: start from an empty account and leave one behind.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    create_labels_table(dynamodb, TABLE)
    try:
        yield endpoint, s3, dynamodb
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
        server.stop()


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
        assert after["d"] == before["d"] and after["sure"] == before["sure"]
        assert all(after[n]["label"] == "Room" for n in "abc")  # the model's answer is kept beside the decision
        assert text("left") == "1 left"

        # When the reviewer presses Backspace: the last decision (c's reject) is undone and c is shown again
        keys.send_keys(Keys.BACKSPACE).perform()
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
