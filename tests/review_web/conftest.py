"""A real browser for the review page: Debian's headless Chromium driven by Selenium (no browser download), and
the emulated account it reviews (moto's server with the versioned photo bucket and the labels table).

`make test` installs `chromium` and `chromium-driver` (`make setup-browser`); without them these tests are
skipped with that reason, and the session ends with a loud line saying so (tests/conftest.py). A failing test
leaves a screenshot of each of its browsers in build/test-artifacts/review_web/.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local_aws.emulation import create_labels_table
from tests.review_api.review_testkit import BUCKET, REGION, TABLE

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "review_web"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1366,860",
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def browsers_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def _start_browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which(CHROMEDRIVER) or CHROMEDRIVER), options=options)


@pytest.fixture
def browsers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Start as many browsers as a test needs (each its own profile: two reviewers never share a session)."""
    if not browsers_available():
        pytest.skip(
            f"needs {CHROMIUM} and {CHROMEDRIVER}: run `make setup-browser` (Debian chromium, chromium-driver)"
        )
    started: list[Any] = []

    def start() -> Any:
        started.append(_start_browser(tmp_path / f"profile-{len(started)}"))
        return started[-1]

    try:
        yield start
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for number, driver in enumerate(started):
                driver.save_screenshot(str(ARTIFACTS / f"{request.node.name}-{number}.png"))
    finally:
        for driver in started:
            driver.quit()


@pytest.fixture
def browser(browsers: Callable[[], Any]) -> Any:
    return browsers()


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any, Any]]:
    """A moto server (what the demo runs) with the versioned photo bucket and the labels table."""
    from moto.server import ThreadedMotoServer

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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say loudly when the browser tests did not run: a green suite without them has not tested the page."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "make setup-browser" in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        terminalreporter.write_sep(
            "!",
            f"{len(skipped)} BROWSER TESTS SKIPPED: no Chromium at {CHROMIUM} / {CHROMEDRIVER} "
            "(run `make setup-browser`); the review page was NOT tested",
            red=True,
            bold=True,
        )
