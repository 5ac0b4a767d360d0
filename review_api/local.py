"""Local mode: the review page and its API on one port, against any S3 + DynamoDB endpoint (moto, or AWS).

    python -m review_api.local --endpoint-url http://127.0.0.1:5000 --table photo-labels --bucket hotel-photos
    python -m review_api.local --table p-labels --history-table p-review-history --bucket p-images   # real AWS

No Cognito here: every request is made as one local reviewer (`--reviewer`, default `local-reviewer`, in the
groups of `--groups`, default both `reviewers` and `leads`), and the page shows a LOCAL MODE badge. Requests go
through the same Powertools handler as in Lambda (review_api.handler), with the ID-token claims API Gateway's JWT
authorizer would have passed (strings, groups as "[a b]"). Photos are presigned URLs of `--endpoint-url`, so the
browser must reach that endpoint too. Against an emulator (`--endpoint-url`) the review history table is created
when missing; against AWS it must exist (stack output ReviewHistoryTableName). Listens on 127.0.0.1 only: it is a
development tool, not a server to expose.

`start_local_review(...)` is what scripts/demo.py calls; it returns a running server (`.url`, `.close()`). Tests
pass `authorizer` (a stand-in for the JWT authorizer reading the Authorization header) and `page_config` (a
cloud-mode config.json pointing at a stand-in Cognito) to drive the page's sign-in.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from classification.contract import Taxonomy
from review_api import handler
from review_api.aws import DynamoLabelTable, S3PhotoStore
from review_api.core import LEASE_SECONDS, PRESIGNED_URL_SECONDS, ReviewConfig, ReviewService
from review_api.identity import REVIEW_GROUPS

WEB_ROOT = Path(__file__).resolve().parent.parent / "review_web"
STATIC_SUFFIXES = (".html", ".js", ".css")
LOCAL_REVIEWER = "local-reviewer"
mimetypes.add_type("text/javascript", ".js")  # ES modules need a JavaScript MIME type
_RESOLVER_LOCK = threading.Lock()
# Lambda sets the EMF namespace; Powertools refuses to build a metric without one (a decision answered 500 after
# it was written). Local mode drops the metrics anyway: any namespace will do when none is set.
LOCAL_METRICS_NAMESPACE = "HotelPhotos-local"
# Headers of a request -> the claims API Gateway would pass on (None: it answers 401 itself).
Authorizer = Callable[[Mapping[str, str]], dict[str, str] | None]


def gateway_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """JWT claims as an HTTP API JWT authorizer passes them to Lambda: every value a string, a list as "[a b]"."""

    def text(value: Any) -> str:
        if isinstance(value, list | tuple):
            return "[" + " ".join(str(inner) for inner in value) + "]"
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return {name: text(value) for name, value in claims.items()}


def local_claims(reviewer: str, groups: Sequence[str]) -> dict[str, str]:
    """The ID-token claims of the local reviewer (no Cognito: the same shape, fixed values)."""
    return gateway_claims(
        {
            "sub": f"local-{reviewer}",
            "email": reviewer,
            "cognito:username": reviewer,
            "cognito:groups": list(groups),
            "token_use": "id",
        }
    )


def default_history_table(table: str) -> str:
    """The stack's naming: `<prefix>-labels` -> `<prefix>-review-history` (stacks/review/history_table.py)."""
    from stacks.review import history_table

    return history_table.table_name(table.removesuffix("-labels"))


def ensure_history_table(dynamodb: Any, name: str) -> None:
    """Create the history table on an emulator if it is missing (the stack creates it in AWS)."""
    from stacks.review import history_table

    try:
        dynamodb.describe_table(TableName=name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        dynamodb.create_table(**history_table.create_table_kwargs(name))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that closes a connection mid-answer (a photo page left, a prefetch cancelled) is not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class LocalReviewServer:
    url: str
    server: ThreadingHTTPServer
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

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


@contextmanager
def _metrics_namespace() -> Iterator[None]:
    """POWERTOOLS_METRICS_NAMESPACE for one request, if the process has none (held under _RESOLVER_LOCK)."""
    if os.environ.get("POWERTOOLS_METRICS_NAMESPACE"):
        yield
        return
    os.environ["POWERTOOLS_METRICS_NAMESPACE"] = LOCAL_METRICS_NAMESPACE
    try:
        yield
    finally:
        del os.environ["POWERTOOLS_METRICS_NAMESPACE"]


def _make_handler(
    service: ReviewService, authorize: Authorizer, page_config: Mapping[str, Any]
) -> type[BaseHTTPRequestHandler]:
    config = json.dumps(page_config).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per photo request would drown the demo's output

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            name = parts.path.lstrip("/") or "index.html"
            if parts.path.startswith("/api/"):
                claims = authorize({key.lower(): value for key, value in self.headers.items()})
                if claims is None:  # API Gateway's own answer when the JWT authorizer refuses the token
                    self._send(401, "application/json", b'{"message":"Unauthorized"}')
                    return
                event = _event(method, parts.path, parts.query, body, claims)
                # The resolver keeps the current event (and the service) on the module (one request per Lambda
                # environment): one at a time here too, though the page sends some requests in parallel.
                with _RESOLVER_LOCK, _metrics_namespace():
                    handler.configure(service)
                    response = handler.app.resolve(event, _LambdaContext())
                    handler.metrics.clear_metrics()  # no CloudWatch here: drop the EMF the handler recorded
                self._send(response["statusCode"], "application/json", (response.get("body") or "").encode())
            elif method == "GET" and parts.path == "/config.json":
                self._send(200, "application/json", config)
            elif (
                method == "GET"
                and "/" not in name
                and name.endswith(STATIC_SUFFIXES)
                and (WEB_ROOT / name).is_file()
            ):
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
    history_table: str | None = None,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    upload_prefix: str = "uploads/",
    taxonomy_file: str | Path | None = None,
    reviewer: str = LOCAL_REVIEWER,
    groups: Sequence[str] = REVIEW_GROUPS,
    lease_seconds: int = LEASE_SECONDS,
    port: int = 0,
    authorizer: Authorizer | None = None,
    page_config: Mapping[str, Any] | None = None,
) -> LocalReviewServer:
    """Serve the page and the API on 127.0.0.1:`port` (0 = any free port) in a background thread.

    `endpoint_url` is the S3 + DynamoDB endpoint (a moto server) or None for AWS with ambient credentials.
    Several servers may run in one process (two reviewers in a test): each request is resolved with its own
    server's service and claims.
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
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)
    history_table = history_table or default_history_table(table)
    if endpoint_url:
        ensure_history_table(dynamodb, history_table)
    taxonomy = Taxonomy.load(taxonomy_file) if taxonomy_file else Taxonomy.load()
    service = ReviewService(
        ReviewConfig(
            bucket=bucket,
            labels=taxonomy.labels,
            upload_prefix=upload_prefix,
            presigned_url_seconds=PRESIGNED_URL_SECONDS,
            lease_seconds=lease_seconds,
        ),
        table=DynamoLabelTable(dynamodb, table, history_table),
        photos=S3PhotoStore(s3),
    )
    handler.logger.setLevel("WARNING")
    claims = local_claims(reviewer, groups)
    config = page_config or {"mode": "local", "apiBase": "", "note": f"decisions recorded as {reviewer}"}
    server = _Server(("127.0.0.1", port), _make_handler(service, authorizer or (lambda headers: claims), config))
    thread = threading.Thread(target=server.serve_forever, name="review-local", daemon=True)
    thread.start()
    return LocalReviewServer(url=f"http://127.0.0.1:{server.server_address[1]}/", server=server, thread=thread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m review_api.local",
        description="Serve the review page and API locally (no Cognito) against an S3 + DynamoDB endpoint.",
    )
    parser.add_argument("--table", required=True, help="labels table name")
    parser.add_argument(
        "--history-table",
        default=None,
        help="review history table (default: <prefix>-review-history for a <prefix>-labels table; created on an "
        "emulator when missing)",
    )
    parser.add_argument("--bucket", required=True, help="photo bucket name")
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"), help="e.g. a moto server")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument("--upload-prefix", default="uploads/")
    parser.add_argument("--taxonomy", default=None, help="taxonomy JSON (default: the shipped one)")
    parser.add_argument("--reviewer", default=LOCAL_REVIEWER, help="name recorded with each decision")
    parser.add_argument(
        "--groups",
        default=",".join(REVIEW_GROUPS),
        help="the local reviewer's groups, comma-separated (default: reviewers,leads: decide, override, export)",
    )
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    server = start_local_review(
        table=args.table,
        history_table=args.history_table,
        bucket=args.bucket,
        endpoint_url=args.endpoint_url,
        region=args.region,
        upload_prefix=args.upload_prefix,
        taxonomy_file=args.taxonomy,
        reviewer=args.reviewer,
        groups=[name.strip() for name in args.groups.split(",") if name.strip()],
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
