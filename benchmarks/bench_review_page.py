"""The review page in real Chromium, scripted reviewer: photos per minute one by one and in the grid, same backlog.

    .venv/bin/python benchmarks/bench_review_page.py [--per-label 18] [--labels 4]
                                                                           [--wrong-every 10]

The backlog: --labels model labels x --per-label NEEDS_REVIEW photos (640x480 JPEGs in the emulated bucket),
every --wrong-every-th of them wrong (the scripted reviewer corrects it by typing three letters of the right label
and Enter). The page and its API run as `python -m review_api.local` does, against moto's server, in Debian's
headless Chromium (`make setup-browser`). The reviewer acts as soon as the page lets it: one by one, Enter once a
photo has loaded; in the grid, the wrong tiles clicked and corrected, then Enter for the page. Each mode starts
from the same backlog.

Prints, per mode: photos, seconds, photos per minute and key presses per photo. This is the page's own pace (its
requests, photo loads, renders): a person adds their looking time, per photo one by one and per page (a glance over
tiles of one label) in the grid.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Bench")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines on the console: nothing reads them

import boto3  # noqa: E402
import numpy as np  # noqa: E402

from classification.contract import Taxonomy  # noqa: E402
from local_aws.emulation import create_labels_table  # noqa: E402
from local_aws.photos import PALETTE, colour_photo, encode  # noqa: E402
from review_api.local import start_local_review  # noqa: E402
from tests.review_api.review_testkit import BUCKET, REGION, TABLE  # noqa: E402
from tests.review_web.conftest import CHROMEDRIVER, CHROMIUM, _start_browser, browsers_available  # noqa: E402
from tests.review_web.pagekit import Page, wait  # noqa: E402


def seed(endpoint: str, labels: list[str], per_label: int, wrong_every: int) -> dict[str, str]:
    """The backlog; returns the right label of each wrong photo (by file name)."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    create_labels_table(dynamodb, TABLE)
    rng = np.random.default_rng(0)
    wrong: dict[str, str] = {}
    number = 0
    for index, label in enumerate(labels):
        for n in range(per_label):
            number += 1
            right = labels[(index + 1) % len(labels)] if number % wrong_every == 0 else label
            name = f"{label.lower()}-{n:02d}{'-wrong' if right != label else ''}.jpg"
            if right != label:
                wrong[name] = right
            key = f"uploads/h1/{name}"
            body = encode(colour_photo(PALETTE[(index * 7 + n) % len(PALETTE)], rng, (640, 480)))
            put = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            dynamodb.put_item(
                TableName=TABLE,
                Item={
                    "image_uri": {"S": f"s3://{BUCKET}/{key}"},
                    "status": {"S": "NEEDS_REVIEW"},
                    "label": {"S": label},
                    "confidence": {"N": str(round(0.4 + 0.39 * rng.random(), 3))},
                    "classified_at": {"S": f"2026-11-30T09:{number // 60:02d}:{number % 60:02d}.000+00:00"},
                    "version_id": {"S": put["VersionId"]},
                    "model": {"S": "bench"},
                    "hotel_id": {"S": "h1"},
                },
            )
    return wrong


def correct(page: Page, list_id: str, label: str) -> int:
    page.type(label[:3].lower())
    wait(lambda: page.text(list_id).startswith(label), f"the {label} suggestion")
    page.key("Enter")
    return 4


def single(page: Page, wrong: dict[str, str]) -> int:
    keys = 0
    while True:
        wait(lambda: page.photo_ready() or page.visible("empty"), "a photo or the end", timeout=30)
        if page.visible("empty"):
            return keys
        name = page.text("photo-name").rsplit("/", 1)[1]
        keys += correct(page, "suggestions", wrong[name]) if name in wrong else (page.key("Enter") or 1)
        wait(lambda n=name: not page.text("photo-name").endswith(n) or page.visible("empty"), "the next photo")


def grid(page: Page, wrong: dict[str, str]) -> int:
    keys = 0
    page.click("view-grid")
    while True:
        wait(lambda: page.visible("grid-empty") or page.body("gridReady") == "true", "a grid page", timeout=30)
        if page.visible("grid-empty"):
            return keys
        title = page.text("grid-title")
        captions = page.driver.execute_script(
            "return [...document.querySelectorAll('#tiles .tile-caption')].map(e => e.textContent)"
        )
        for position, caption in enumerate(captions):
            name = caption.split("· ")[1]
            if name in wrong:
                page.driver.execute_script(
                    "document.querySelectorAll('#tiles .tile')[arguments[0]].click()", position
                )
                keys += 1 + correct(page, "grid-suggestions", wrong[name])
                wait(lambda: "Corrected" in page.text("grid-message"), "the correction")
        wait(lambda: page.body("gridReady") == "true", "the page's photos")
        page.key("Enter")
        keys += 1
        wait(lambda t=title: page.text("grid-title") != t or page.visible("grid-empty"), "the next page", 30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=4)
    parser.add_argument("--per-label", type=int, default=18)
    parser.add_argument("--wrong-every", type=int, default=10)
    args = parser.parse_args()
    if not browsers_available():
        print(f"needs {CHROMIUM} and {CHROMEDRIVER}: run `make setup-browser`", file=sys.stderr)
        return 2
    from moto.server import ThreadedMotoServer

    labels = list(Taxonomy.load().labels[: args.labels])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    photos = args.labels * args.per_label
    results: list[tuple[str, float, int]] = []
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    try:
        for mode, drive in (("one by one", single), ("grid", grid)):
            wrong = seed(endpoint, labels, args.per_label, args.wrong_every)
            with (
                tempfile.TemporaryDirectory() as profile,
                start_local_review(table=TABLE, bucket=BUCKET, endpoint_url=endpoint, region=REGION) as review,
            ):
                driver: Any = _start_browser(Path(profile))
                try:
                    page = Page(driver).open(review.url)
                    began = time.monotonic()
                    keys = drive(page, wrong)
                    results.append((mode, time.monotonic() - began, keys))
                finally:
                    driver.quit()
    finally:
        server.stop()
    print(
        f"{photos} photos ({len(wrong)} wrong, corrected by typing), {args.labels} labels, Chromium, moto server"
    )
    print(f"{'mode':<11} {'seconds':>8} {'photos/min':>10} {'keys/photo':>10}")
    for mode, seconds, keys in results:
        print(f"{mode:<11} {seconds:>8.1f} {photos / seconds * 60:>10.0f} {keys / photos:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
