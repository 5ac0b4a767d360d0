"""Local mode: the review page and its API on one port, against any S3 + DynamoDB endpoint (moto, or AWS).

    python -m review_api.local --endpoint-url http://127.0.0.1:5000 --table photo-labels --bucket hotel-photos
    python -m review_api.local --table photo-labels --bucket hotel-photos      # real AWS, ambient credentials

No Cognito here: every request is made as one local reviewer (`--reviewer`, default `local-reviewer`), and the
page shows a LOCAL MODE badge. Requests go through the same Powertools handler as in Lambda (review_api.handler),
with the claims the JWT authorizer would have added. Photos are presigned URLs of `--endpoint-url`, so the browser
must reach that endpoint too. Listens on 127.0.0.1 only: it is a development tool, not a server to expose.

`start_local_review(...)` is what scripts/demo.py calls; it returns a running server (`.url`, `.close()`).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
from botocore.config import Config

from classification.contract import Taxonomy
from review_api import handler
from review_api.aws import DynamoLabelTable, S3PhotoStore
from review_api.core import PRESIGNED_URL_SECONDS, ReviewConfig, ReviewService

WEB_ROOT = Path(__file__).resolve().parent.parent / "review_web"
STATIC_FILES = ("index.html", "app.js", "auth.js", "style.css")
LOCAL_REVIEWER = "local-reviewer"
mimetypes.add_type("text/javascript", ".js")  # ES modules need a JavaScript MIME type
_RESOLVER_LOCK = threading.Lock()


@dataclass
class LocalReviewServer:
    url: str
    server: ThreadingHTTPServer
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        handler.configure(None)

    def __enter__(self) -> LocalReviewServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LambdaContext:
    function_name = "photo-review-local"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:photo-review-local"
    aws_request_id = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def _event(method: str, path: str, query: str, body: bytes, claims: dict[str, str]) -> dict[str, Any]:
    """An HTTP API payload v2 event as API Gateway sends it after the JWT authorizer accepted the token."""
    params = dict(parse_qsl(query, keep_blank_values=False))
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json"},
        "queryStringParameters": params or None,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "authorizer": {"jwt": {"claims": claims, "scopes": None}},
            "requestId": "local",
            "stage": "$default",
        },
        "body": body.decode() if body else None,
        "isBase64Encoded": False,
    }


def _make_handler(claims: dict[str, str], note: str) -> type[BaseHTTPRequestHandler]:
    config = json.dumps({"mode": "local", "apiBase": "", "note": note}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per photo request would drown the demo's output

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            if parts.path.startswith("/api/"):
                length = int(self.headers.get("Content-Length") or 0)
                event = _event(method, parts.path, parts.query, self.rfile.read(length), claims)
                # The resolver keeps the current event on itself (one request per Lambda environment): one at a
                # time here too, though the page sends some requests in parallel.
                with _RESOLVER_LOCK:
                    response = handler.app.resolve(event, _LambdaContext())
                    handler.metrics.clear_metrics()  # no CloudWatch here: drop the EMF the handler recorded
                body = (response.get("body") or "").encode()
                self._send(response["statusCode"], "application/json", body)
            elif method == "GET" and parts.path == "/config.json":
                self._send(200, "application/json", config)
            elif method == "GET" and parts.path.lstrip("/") in ("", *STATIC_FILES):
                name = parts.path.lstrip("/") or "index.html"
                kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
                self._send(200, kind, (WEB_ROOT / name).read_bytes())
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    return Handler


def start_local_review(
    *,
    table: str,
    bucket: str,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    upload_prefix: str = "uploads/",
    taxonomy_file: str | Path | None = None,
    reviewer: str = LOCAL_REVIEWER,
    port: int = 0,
) -> LocalReviewServer:
    """Serve the page and the API on 127.0.0.1:`port` (0 = any free port) in a background thread.

    `endpoint_url` is the S3 + DynamoDB endpoint (a moto server) or None for AWS with ambient credentials.
    """
    session = boto3.session.Session(region_name=region)
    if endpoint_url and session.get_credentials() is None:
        # An emulator accepts any credentials; without some, botocore cannot sign at all.
        session = boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=region
        )
    s3 = session.client(
        "s3", endpoint_url=endpoint_url, config=Config(signature_version="s3v4", s3={"addressing_style": "path"})
    )
    taxonomy = Taxonomy.load(taxonomy_file) if taxonomy_file else Taxonomy.load()
    service = ReviewService(
        ReviewConfig(
            bucket=bucket,
            labels=taxonomy.labels,
            upload_prefix=upload_prefix,
            presigned_url_seconds=PRESIGNED_URL_SECONDS,
        ),
        table=DynamoLabelTable(session.client("dynamodb", endpoint_url=endpoint_url), table),
        photos=S3PhotoStore(s3),
    )
    handler.configure(service)
    handler.logger.setLevel("WARNING")
    claims = {"sub": reviewer, "cognito:username": reviewer, "email": reviewer}
    note = f"decisions recorded as {reviewer}"
    server = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(claims, note))
    thread = threading.Thread(target=server.serve_forever, name="review-local", daemon=True)
    thread.start()
    return LocalReviewServer(url=f"http://127.0.0.1:{server.server_address[1]}/", server=server, thread=thread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m review_api.local",
        description="Serve the review page and API locally (no Cognito) against an S3 + DynamoDB endpoint.",
    )
    parser.add_argument("--table", required=True, help="labels table name")
    parser.add_argument("--bucket", required=True, help="photo bucket name")
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"), help="e.g. a moto server")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument("--upload-prefix", default="uploads/")
    parser.add_argument("--taxonomy", default=None, help="taxonomy JSON (default: the shipped one)")
    parser.add_argument("--reviewer", default=LOCAL_REVIEWER, help="name recorded with each decision")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    server = start_local_review(
        table=args.table,
        bucket=args.bucket,
        endpoint_url=args.endpoint_url,
        region=args.region,
        upload_prefix=args.upload_prefix,
        taxonomy_file=args.taxonomy,
        reviewer=args.reviewer,
        port=args.port,
    )
    where = args.endpoint_url or f"AWS {args.region}"
    print(f"Review page (LOCAL MODE, no sign-in) at {server.url} against {where}; Ctrl-C stops it.", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
