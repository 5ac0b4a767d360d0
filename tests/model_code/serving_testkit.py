"""Helpers shared by the serving tests."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from typing import Any

from PIL import Image


def jpeg(colour: tuple[int, int, int] = (30, 80, 220), size: tuple[int, int] = (400, 300)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def send(
    url: str, body: bytes | None = None, *, method: str | None = None, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
