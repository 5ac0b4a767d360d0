"""Driving the review page in a browser: waits, texts, key presses (through Chrome DevTools when a test needs what
Selenium cannot send: auto-repeat, a held key), and a slow or failing proxy in front of the emulated bucket."""

from __future__ import annotations

import http.client
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

from tests.review_web.conftest import ARTIFACTS

DOC_IMAGES = ARTIFACTS.parents[2] / "docs" / "images"
SCREENSHOT_WIDTH = 960  # px: readable in the README, a few tens of KB

# windowsVirtualKeyCode and code of the keys tests press (Chrome needs them to fire a real keydown).
_KEYS = {
    "Enter": ("Enter", 13, "\r"),
    "Delete": ("Delete", 46, None),
    "Backspace": ("Backspace", 8, None),
    "ArrowRight": ("ArrowRight", 39, None),
    "z": ("KeyZ", 90, "z"),
}
META = 4  # CDP modifier bits: Alt 1, Ctrl 2, Meta 4, Shift 8
CTRL = 2


def wait(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # an element re-rendered between find and read: try again
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Page:
    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, url: str, *, platform: str | None = None) -> Page:
        if platform:
            # navigator.platform as a Mac reports it: the page shows the keys printed on a Mac keyboard.
            agent = self.driver.execute_script("return navigator.userAgent")
            self.driver.execute_cdp_cmd(
                "Emulation.setUserAgentOverride", {"userAgent": agent, "platform": platform}
            )
        self.driver.get(url)
        wait(lambda: self.body("ready") in ("true", "error"), "the page to start")
        assert self.body("ready") == "true", self.text("message")
        return self

    def body(self, name: str) -> str | None:
        return self.driver.execute_script(f"return document.body.dataset.{name} || null")

    def text(self, element_id: str) -> str:
        return self.driver.execute_script(
            "const e = document.getElementById(arguments[0]); return e ? e.textContent.trim() : ''", element_id
        )

    def visible(self, element_id: str) -> bool:
        return bool(
            self.driver.execute_script(
                "const e = document.getElementById(arguments[0]); return e && !e.closest('[hidden]')"
                " && e.offsetParent !== null",
                element_id,
            )
        )

    def click(self, element_id: str) -> None:
        self.driver.execute_script("document.getElementById(arguments[0]).click()", element_id)

    def photo_ready(self) -> bool:
        return self.body("photoReady") == "true"

    def shows(self, name: str, timeout: float = 15.0) -> None:
        wait(
            lambda: self.text("photo-name").endswith(name),
            f"photo {name} (showing {self.text('photo-name')!r})",
            timeout,
        )

    def key(self, key: str, *, modifiers: int = 0, repeat: bool = False, up: bool = True) -> None:
        """A key press as the keyboard sends it (keydown, optionally auto-repeated, keyup) through DevTools."""
        code, virtual, text = _KEYS[key] if key in _KEYS else (f"Key{key.upper()}", ord(key.upper()), key)
        event = {"key": key, "code": code, "windowsVirtualKeyCode": virtual, "modifiers": modifiers}
        if text and not modifiers:
            event["text"] = text
        self.driver.execute_cdp_cmd("Input.dispatchKeyEvent", {"type": "keyDown", "autoRepeat": repeat, **event})
        if up:
            self.driver.execute_cdp_cmd("Input.dispatchKeyEvent", {"type": "keyUp", **event})

    def release(self, key: str) -> None:
        code, virtual, _ = _KEYS[key]
        self.driver.execute_cdp_cmd(
            "Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": virtual}
        )

    def type(self, text: str) -> None:
        for character in text:
            self.key(character)


def save_screenshot(driver: Any, name: str) -> Any:
    """The page as the browser drew it, scaled down and palette-reduced (a small PNG). Written to docs/images/
    (the README shows it) when UPDATE_SCREENSHOTS=1, otherwise to build/test-artifacts/review_web/."""
    from PIL import Image

    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image = image.resize((SCREENSHOT_WIDTH, round(image.height * SCREENSHOT_WIDTH / image.width)), Image.LANCZOS)
    folder = DOC_IMAGES if os.environ.get("UPDATE_SCREENSHOTS") == "1" else ARTIFACTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


class _Proxy(BaseHTTPRequestHandler):
    target: ClassVar[str] = ""
    slow: ClassVar[dict[str, float]] = {}
    failing: ClassVar[set[str]] = set()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")

    def do_PUT(self) -> None:
        self._forward("PUT")

    def do_HEAD(self) -> None:
        self._forward("HEAD")

    def _forward(self, method: str) -> None:
        path = urlsplit(self.path).path
        if method == "GET" and any(name in path for name in self.failing):
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        for name, seconds in self.slow.items():
            if method == "GET" and name in path:
                time.sleep(seconds)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        target = urlsplit(self.target)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
        headers["Host"] = target.netloc
        connection.request(method, self.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)


@contextmanager
def slow_proxy(
    target: str, *, slow: dict[str, float] | None = None, failing: set[str] | None = None
) -> Iterator[str]:
    """An HTTP proxy in front of `target` (the moto server) that delays GETs of paths containing a key of `slow`
    and answers 500 to those containing one of `failing`: photos that load slowly, or never."""
    handler = type("Proxy", (_Proxy,), {"target": target, "slow": slow or {}, "failing": failing or set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
