"""Helpers shared by the serving tests."""

from __future__ import annotations

import io
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image

# The Lambda bundle puts lambda/*.py at the task root; the tests import its modules the same way.
LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"
if str(LAMBDA_DIR) not in sys.path:
    sys.path.insert(0, str(LAMBDA_DIR))


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
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post_json(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST one JSON request; AssertionError (with the engine's message) unless it answers 200."""
    status, body = send(url, json.dumps(payload).encode())
    assert status == 200, body
    return body


def runtime_client(endpoint_url: str) -> Any:
    """An unmodified boto3 sagemaker-runtime client aimed at a local server (dummy credentials)."""
    import boto3

    return boto3.client(
        "sagemaker-runtime",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
