"""The deployed page's sign-in (review_web/auth.js) in real Chromium against a local stand-in for Cognito's
managed login and token endpoint and for API Gateway's JWT authorizer (tests/review_web/cognito_standin.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from review_api.local import start_local_review
from tests.review_api.review_testkit import BUCKET, CLIENT_ID, REGION, TABLE, history_of, read_item, seed_photo
from tests.review_web.cognito_standin import StandIn, cognito_standin
from tests.review_web.pagekit import CTRL, Page, wait

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _cloud_page(endpoint: str, **settings: Any) -> Iterator[tuple[StandIn, str]]:
    """The page in cloud mode: config.json names the stand-in as Cognito and the page's root as the one redirect
    URI, which is also the client's only callback URL (stacks/review/page.py writes both from the same value)."""
    port = _free_port()
    root = f"http://127.0.0.1:{port}/"
    with cognito_standin(callback_urls=[root], **settings) as standin:
        config = {
            "mode": "cloud",
            "apiBase": "",
            "cognito": {
                "domain": standin.url,
                "clientId": CLIENT_ID,
                "redirectUri": root,
                "scopes": "openid email",
            },
        }
        with start_local_review(
            table=TABLE,
            bucket=BUCKET,
            endpoint_url=endpoint,
            region=REGION,
            port=port,
            authorizer=standin.authorize,
            page_config=config,
        ):
            yield standin, root


def _seed(s3: Any, dynamodb: Any, count: int) -> list[str]:
    names = [f"p{n}.jpg" for n in range(count)]
    for minute, name in enumerate(names):
        seed_photo(s3, dynamodb, f"uploads/h1/{name}", classified_at=f"2026-11-30T09:0{minute}:00.000+00:00")
    return names


def test_signing_in_from_index_html_uses_the_one_redirect_uri_the_client_allows(
    emulated: tuple[str, Any, Any], browser: Any
) -> None:
    endpoint, s3, dynamodb = emulated
    _seed(s3, dynamodb, 1)
    with _cloud_page(endpoint) as (standin, root):
        # When a reviewer opens the page at /index.html (a bookmark, a link)
        page = Page(browser).open(root + "index.html")
        # Then sign-in sent the client's callback URL, not the path, and the reviewer is back on the page
        assert standin.authorize_calls == [root]
        assert page.text("who") == "ana@example.com" and browser.current_url == root
        wait(page.photo_ready, "the photo")
        assert standin.grants == ["authorization_code"]


def test_the_refresh_token_keeps_a_reviewer_signed_in_with_their_place_and_undo_history(
    emulated: tuple[str, Any, Any], browser: Any
) -> None:
    endpoint, s3, dynamodb = emulated
    names = _seed(s3, dynamodb, 4)
    # ID tokens that live 62 s: the page renews them 60 s before, so after 2 s
    with _cloud_page(endpoint, lifetime=62) as (standin, root):
        page = Page(browser).open(root)
        browser.execute_script("window.__signedInOnce = true")  # gone if the page navigates to sign in again
        wait(page.photo_ready, "the first photo")
        page.key("Enter")
        page.shows(names[1])
        first_token = standin.used[-1]

        # When the token is about to expire and the reviewer decides again
        time.sleep(2.5)
        wait(page.photo_ready, "the second photo")
        page.key("Enter")
        page.shows(names[2])

        # Then the page renewed it in the background: a refresh grant, no new sign-in, the same page
        assert standin.grants == ["authorization_code", "refresh_token"]
        assert standin.authorize_calls == [root]
        assert browser.execute_script("return window.__signedInOnce === true")
        assert standin.used[-1] != first_token
        # and undo still reaches the decision made with the first token
        page.key("z", modifiers=CTRL)
        page.shows(names[1])
        wait(lambda: "review_decision" not in read_item(dynamodb, f"s3://{BUCKET}/uploads/h1/{names[1]}"), "undo")

        # When the API refuses the current token (revoked): the page renews it once and the decision goes through
        standin.revoked.add(standin.used[-1])
        wait(page.photo_ready, "the photo again")
        page.key("Enter")
        page.shows(names[2])
        assert standin.grants[-1] == "refresh_token" and len(standin.grants) == 3
        assert read_item(dynamodb, f"s3://{BUCKET}/uploads/h1/{names[1]}")["review_decision"] == "confirm"  # type: ignore[index]

        # When the working day is over (the refresh token expired): one sign-in round trip, and the reviewer keeps
        # the filter and the undo history
        standin.refresh_expired = True
        time.sleep(2.5)
        wait(page.photo_ready, "the third photo")
        page.key("Enter")
        wait(lambda: len(standin.authorize_calls) == 2, "the second sign-in")
        wait(lambda: page.body("ready") in ("true", "error"), "the page after signing in again")
        assert page.body("ready") == "true", (page.text("message"), browser.current_url)
        assert not browser.execute_script("return window.__signedInOnce === true")
        page.key("z", modifiers=CTRL)
        wait(lambda: "Undone" in page.text("message"), "undo after signing in again")
        undone = [e["action"] for e in history_of(dynamodb, f"s3://{BUCKET}/uploads/h1/{names[1]}")]
        assert undone[-1] == "undo" and undone.count("decide") == 2
