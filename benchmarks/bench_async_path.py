"""N photos through endpoint.mode async end to end: how many inferences per photo, and how many duplicates.

    .venv/bin/python benchmarks/bench_async_path.py [--photos 200] [--duplicates 0.25] [--overwrites 0.1]
                                                    [--model-url URL] [--concurrency 4]

The real handlers (lambda/handler.py submitting, lambda/async_handler.py writing labels) run in this process
against moto's server, with tools/async_worker.py as the async endpoint, exactly as `scripts/demo.py --mode async`
wires them (local_aws's label_async). S3 delivers notifications at least once, so a fraction (--duplicates) of
the upload notifications is delivered twice, and a fraction of the photos (--overwrites) gets a second version
while the first may be in flight. The model is --model-url (anything serving POST /invocations: vLLM via
model_code/vllm_server.py) or, by default, a stub that answers one taxonomy label instantly (the path is
measured, not the model).

Prints photos, versions, notifications, InvokeEndpointAsync submissions, inferences run, duplicate submissions,
and what the table holds: one final label per photo, for its current version.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from local_aws import load_app_config  # noqa: E402
from local_aws.emulation import REGION, LocalAws  # noqa: E402
from local_aws.lambda_runner import label_async  # noqa: E402

STUB_ANSWER = {
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": " this is a photo of Pool."},
            "logprobs": {"content": [{"token": "Pool", "logprob": -0.01, "top_logprobs": []}]},
            "finish_reason": "stop",
        }
    ]
}


class _Stub(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = json.dumps(STUB_ANSWER).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


def jpeg(index: int, version: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 72), ((index * 37) % 256, (index * 11 + version * 90) % 256, 128)).save(buffer, "JPEG")
    return buffer.getvalue()


def duplicate_notifications(aws: LocalAws, fraction: float) -> tuple[int, int]:
    """Re-queue every upload notification, a fraction of them twice (S3's at-least-once delivery)."""
    bodies: list[str] = []
    while True:
        found = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = found.get("Messages", [])
        if not messages:
            break
        bodies += [m["Body"] for m in messages]
        aws.sqs.delete_message_batch(
            QueueUrl=aws.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    copies = [
        body
        for index, body in enumerate(bodies)
        if "ObjectCreated" in body and (index * fraction) % 1 + fraction >= 1
    ]
    for body in bodies + copies:
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)
    return len(bodies), len(copies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/bench_async_path.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--duplicates", type=float, default=0.25, help="fraction of notifications delivered twice")
    parser.add_argument("--overwrites", type=float, default=0.1, help="fraction of photos uploaded a second time")
    parser.add_argument("--model-url", default=None, help="a model server with POST /invocations (default: stub)")
    parser.add_argument("--concurrency", type=int, default=4, help="MaxConcurrentInvocationsPerInstance")
    args = parser.parse_args(argv)
    if args.photos < 1 or not 0 <= args.duplicates <= 1 or not 0 <= args.overwrites <= 1:
        parser.error("--photos must be >= 1, --duplicates and --overwrites within 0..1")
    for name, value in {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ.setdefault(name, value)

    stub = None
    model_url = args.model_url
    if model_url is None:
        stub = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        model_url = f"http://127.0.0.1:{stub.server_address[1]}"
    config = load_app_config()
    overwritten = int(args.photos * args.overwrites)
    try:
        with (
            LocalAws.for_app(config) as aws,
            tempfile.TemporaryFile("w+") as log,
        ):
            prefix = config.storage.upload_prefix
            keys = [f"{prefix}hotel-{index % 7:04d}/photo-{index:05d}.jpg" for index in range(args.photos)]
            began = time.monotonic()
            for index, key in enumerate(keys):
                aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=jpeg(index, 0))
            for index, key in enumerate(keys[:overwritten]):
                aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=jpeg(index, 1))
            delivered, copies = duplicate_notifications(aws, args.duplicates)
            print(
                f"{args.photos} photos, {args.photos + overwritten} versions, {delivered + copies} notifications "
                f"({copies} duplicates); model {'stub' if stub else model_url}",
                flush=True,
            )
            drain = label_async(
                aws,
                model_url,
                taxonomy_file=REPO / config.taxonomy_file,
                config=config,
                log=log,
                progress=False,
                concurrency=args.concurrency,
            )
            seconds = time.monotonic() - began
            items = {item["image_uri"]: item for item in aws.items()}
            current = {
                f"s3://{aws.bucket}/{key}": aws.s3.head_object(Bucket=aws.bucket, Key=key)["ETag"].strip('"')
                for key in keys
            }
    finally:
        if stub is not None:
            stub.shutdown()
            stub.server_close()
    stats = drain.endpoint
    statuses = Counter(item["status"] for item in items.values())
    stale = sum(1 for uri, etag in current.items() if items.get(uri, {}).get("etag") != etag)
    pending = sum(1 for item in items.values() if "pending_inference_id" in item)
    print(
        f"InvokeEndpointAsync submissions: {stats.submissions}  ({stats.submissions / args.photos:.3f} per photo)"
    )
    print(f"inferences run:                  {stats.inferences}  ({stats.inferences / args.photos:.3f} per photo)")
    print(f"duplicate submissions:           {stats.duplicate_submissions}")
    print(f"table: {dict(sorted(statuses.items()))}, {len(items)} items for {args.photos} photos")
    print(f"labels for a stale version:      {stale}; claims left pending: {pending}")
    print(f"wall time {seconds:.1f} s ({args.photos / seconds:.1f} photos/s on this machine, stub model)")
    ok = stale == 0 and pending == 0 and len(items) == args.photos
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
