"""The demo's async path (local_aws's label_async) without training: moto's server, the real handlers,
tools/async_worker.py as SageMaker, and a model server stub that fails some photos' first inference (resubmitted)
and one photo every time (DLQ)."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from PIL import Image

from local_aws import load_app_config
from local_aws.emulation import LocalAws
from local_aws.lambda_runner import label_async
from local_aws.training import REPO_ROOT

COLOURS = {"Pool": (0, 0, 240), "Bar": (240, 0, 0), "Lobby": (0, 240, 0)}
FLAKY = (240, 240, 0)  # first inference fails with a 500, the second answers
BROKEN = (0, 240, 240)  # every inference fails


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


class Model(BaseHTTPRequestHandler):
    """Answers the label whose colour the photo has (the request's own base64 JPEG, decoded)."""

    seen: ClassVar[Counter[tuple[int, int, int]]] = Counter()

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        url = next(
            part["image_url"]["url"]
            for message in request["messages"]
            if isinstance(message["content"], list)
            for part in message["content"]
            if part.get("type") == "image_url"
        )
        pixel = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB").getpixel((32, 24))
        colour = min(
            [*COLOURS.values(), FLAKY, BROKEN],
            key=lambda c: sum((a - b) ** 2 for a, b in zip(c, pixel, strict=True)),
        )
        Model.seen[colour] += 1
        if colour == BROKEN or (colour == FLAKY and Model.seen[colour] == 1):
            self._send(500, {"error": "CUDA error: an illegal memory access"})
            return
        label = next((name for name, c in COLOURS.items() if c == colour), "Room")
        content = f" this is a photo of {label}."
        self._send(
            200, {"choices": [{"message": {"content": content}, "logprobs": {"content": [{"logprob": -0.01}]}}]}
        )

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def model_url() -> Iterator[str]:
    Model.seen = Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Model)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_every_photo_gets_one_label_through_the_async_path(model_url: str, tmp_path: Any) -> None:
    config = load_app_config()
    with (
        LocalAws(
            bucket="photos",
            table="labels",
            queue_name="uploads",
            upload_prefix=config.storage.upload_prefix,
            max_receive_count=2,
        ) as aws,
        (tmp_path / "lambda.log").open("w") as log,
    ):
        # Given photos of three labels, one that fails once, one that always fails, and a bad file
        keys = {}
        for name, colour in [*COLOURS.items(), ("flaky", FLAKY), ("broken", BROKEN)]:
            keys[name] = f"uploads/h-1/{name}.jpg"
            aws.s3.put_object(Bucket=aws.bucket, Key=keys[name], Body=jpeg(colour))
        aws.s3.put_object(Bucket=aws.bucket, Key="uploads/h-1/notes.txt", Body=b"not a photo")

        # When the async path runs until everything is idle
        drain = label_async(
            aws, model_url, taxonomy_file=REPO_ROOT / config.taxonomy_file, config=config, log=log, progress=False
        )
        items = {item["image_uri"].rsplit("/", 1)[1]: item for item in aws.items()}
        dead = aws.queue_depth(
            drain.endpoint
            and aws.sqs.get_queue_url(QueueName=f"{config.name_prefix}-async-notifications-dlq")["QueueUrl"]
        )

    # Then each photo has its label, the flaky one after one resubmission, and the bad file is rejected unsubmitted
    for name in COLOURS:
        assert (items[f"{name}.jpg"]["status"], items[f"{name}.jpg"]["label"]) == ("LABELED", name)
    assert items["flaky.jpg"]["status"] == "LABELED"
    assert items["notes.txt"]["status"] == "REJECTED"
    # and the one that always fails stays PENDING with its error, its notification dead-lettered after 3 attempts
    broken = items["broken.jpg"]
    assert broken["status"] == "PENDING" and broken["pending_failed_at"] and "500" in broken["pending_error"]
    assert Model.seen[BROKEN] == 3 and Model.seen[FLAKY] == 2
    assert dead == 1
    stats = drain.endpoint
    # one submission per photo version, plus the resubmissions of failed inferences (flaky 1, broken 2)
    assert (stats.submissions, stats.inferences, stats.duplicate_submissions) == (8, 8, 3)
