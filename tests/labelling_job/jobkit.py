"""Helpers for the labelling job's tests: PENDING photos as the Lambda records them, and a model that answers by
colour through the same request/response contract as vLLM (the real engine runs in the end-to-end test)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from typing import Any

from labeller_aws import DynamoLabelStore, S3ObjectStore
from labeller_core import Status
from labeller_inputs import ObjectRef
from labeller_testkit import BUCKET, MODEL_ID, TABLE, Aws, labeller_config, photo, vllm_answer
from PIL import Image
from scheduled_core import PendingRecorder

COLOURS = {"Pool": (0, 0, 240), "Bar": (240, 0, 0), "Lobby": (0, 240, 0), "Spa": (120, 0, 120)}
# The job's environment as the window passes it (classification/labeller_environment.py, scheduled mode).
JOB_ENVIRON = {
    "ENDPOINT_MODE": "scheduled",
    "TABLE_NAME": TABLE,
    "MODEL_ID": MODEL_ID,
    "CONFIDENCE_THRESHOLD": "0.6",
    "UPLOAD_PREFIX": "",
    "HOTEL_ID_PATTERN": r"^[^/]+/(?P<hotel_id>[^/]+)/",
}


def record_pending(aws: Aws, key: str, body: bytes, *, validate: bool = True) -> ObjectRef:
    """Upload a photo and record it PENDING as the scheduled upload (or backfill) Lambda does; its manifest ref."""
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    recorder = PendingRecorder(
        labeller_config(JOB_ENVIRON),
        objects=S3ObjectStore(aws.s3),
        labels=DynamoLabelStore(aws.dynamodb, TABLE),
        validate=validate,
    )
    outcome = recorder.process(ObjectRef(BUCKET, key))
    assert outcome.status is Status.PENDING, outcome
    item = aws.item(key)
    assert item is not None
    return ObjectRef(BUCKET, key, item["etag"], hotel_id=item.get("hotel_id"))


def colour_photo(label: str) -> bytes:
    return photo(COLOURS[label], (320, 240))


class ColourModel:
    """Answers each request with the label whose colour its photo has; counts the photos it was asked about."""

    def __init__(self, *, outside_taxonomy: set[str] | None = None) -> None:
        self.answered: list[str] = []
        self.outside_taxonomy = outside_taxonomy or set()

    def __call__(self, requests: Sequence[bytes]) -> list[dict[str, Any]]:
        answers = []
        for request in requests:
            label = self._label(json.loads(request))
            self.answered.append(label)
            answers.append(vllm_answer("Sauna Deluxe" if label in self.outside_taxonomy else label, logprob=-0.01))
        return answers

    @staticmethod
    def _label(body: dict[str, Any]) -> str:
        url = body["messages"][0]["content"][1]["image_url"]["url"]
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        pixel = image.getpixel((image.width // 2, image.height // 2))
        return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], pixel, strict=True)))
