"""A local, CPU-only stand-in for the SageMaker endpoint: any saved model directory behind the container contract.

    python -m model_code.local_server --model-dir MODEL_DIR [--host 127.0.0.1] [--port 8080]
                                      [--endpoint-name NAME] [--taxonomy FILE] [--threads N]

Routes (standard library HTTP server, one thread per connection, one model call at a time):
- `GET /ping` -> 200 once the model is loaded (503 while loading, 500 if loading failed): SageMaker's health check.
- `POST /invocations` -> the OpenAI-style chat completion the production endpoint (LMI async mode -> vLLM)
  answers, for the request `classification.contract.Taxonomy.build_request` builds: the answer is always one of
  `structured_outputs.choice` (see model_code/choice_scorer.py), with per-token logprobs and usage.
  A malformed request gets a 4xx JSON error `{"error": {"message", "type", "param", "code"}}` and changes nothing.
- `POST /endpoints/<name>/invocations` -> the SageMaker Runtime InvokeEndpoint API in front of the same model, so
  an unmodified boto3 `sagemaker-runtime` client works when `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` points here:
  container errors become a 424 `ModelError` (with `OriginalStatusCode`), an unknown endpoint name (when
  `--endpoint-name` is given) a 400 `ValidationError`, as the real service answers.

Limits: request bodies above 6 MB get 413 (SageMaker's real-time limit); one image per request; CPU speed (the
tiny test model answers in well under a second; a 7B model on CPU takes minutes per photo).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from model_code.chat_protocol import MAX_REQUEST_BYTES, RequestError, chat_completion, parse_request

logger = logging.getLogger("model_code.local_server")

DEFAULT_PORT = 8080  # what SageMaker containers listen on
_RUNTIME_PATH_RE = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
_JSON_TYPES = ("application/json", "application/*", "*/*", "")
# SageMaker Runtime's placeholder when a container error has no log stream to point at.
_LOCAL_ACCOUNT = "000000000000"


class LocalServer:
    """The HTTP server plus its model; `start()` serves in a background thread, `stop()` releases everything."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        endpoint_name: str | None = None,
        default_choices: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.endpoint_name = endpoint_name
        self._default_choices = list(default_choices) if default_choices else None
        self._threads = threads
        self.scorer: Any = None  # ChoiceScorer once loaded
        self.load_error: str | None = None
        self._loaded = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True  # an abandoned client connection never blocks shutdown
        self._httpd.app = self  # type: ignore[attr-defined]
        self._serve_thread: threading.Thread | None = None
        self._load_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def ready(self) -> bool:
        return self.scorer is not None

    @property
    def default_choices(self) -> list[str] | None:
        return self._default_choices

    def start(self) -> LocalServer:
        """Serve now (/ping answers 503) and load the model in the background; returns self."""
        self._serve_thread = threading.Thread(target=self._httpd.serve_forever, name="local-server", daemon=True)
        self._serve_thread.start()
        self._load_thread = threading.Thread(target=self._load, name="local-server-load", daemon=True)
        self._load_thread.start()
        return self

    def _load(self) -> None:
        from model_code.choice_scorer import ChoiceScorer, ModelLoadError, default_choices

        started = time.monotonic()
        try:
            scorer = ChoiceScorer(self.model_dir, threads=self._threads)
            if self._default_choices is None:
                self._default_choices = default_choices(self.model_dir)
            self.scorer = scorer
            logger.info("model %s loaded in %.1f s", self.model_dir, time.monotonic() - started)
        except ModelLoadError as error:
            self.load_error = str(error)
            logger.error("%s", error)
        except Exception as error:  # any loader failure must surface on /ping, not kill a thread silently
            self.load_error = f"{type(error).__name__}: {error}"
            logger.exception("loading %s failed", self.model_dir)
        finally:
            self._loaded.set()

    def wait_until_ready(self, timeout: float = 300.0) -> None:
        """Block until the model is loaded; RuntimeError if loading failed or took longer than timeout s."""
        if not self._loaded.wait(timeout):
            raise RuntimeError(f"model {self.model_dir} not loaded after {timeout:.0f} s")
        if self.load_error:
            raise RuntimeError(self.load_error)

    def stop(self) -> None:
        if self._serve_thread is not None:
            self._httpd.shutdown()
            self._serve_thread.join()
            self._serve_thread = None
        self._httpd.server_close()
        if self._load_thread is not None:
            self._load_thread.join()
            self._load_thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling (no HTTP here: (status, body, headers) out) --------------------------------------------

    def ping(self) -> tuple[int, dict[str, Any]]:
        if self.ready:
            return HTTPStatus.OK, {"status": "Healthy", "model_dir": str(self.model_dir)}
        if self.load_error:
            return HTTPStatus.INTERNAL_SERVER_ERROR, {"status": "Failed", "error": self.load_error}
        return HTTPStatus.SERVICE_UNAVAILABLE, {"status": "Loading"}

    def invoke(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """The /invocations contract: (HTTP status, JSON body); never raises."""
        if not self.ready:
            message = self.load_error or "the model is still loading; retry when GET /ping answers 200"
            return HTTPStatus.SERVICE_UNAVAILABLE, RequestError(message, status=503).to_json()
        try:
            request = parse_request(body, default_choices=self._default_choices)
            answer = self.scorer.answer(request)
        except RequestError as error:
            return error.status, error.to_json()
        except Exception as error:  # a model bug answers 500 for this request; the server keeps serving
            logger.exception("invocation failed")
            return HTTPStatus.INTERNAL_SERVER_ERROR, RequestError(
                f"internal error: {type(error).__name__}: {error}", status=500
            ).to_json()
        response = chat_completion(
            content=answer.content,
            model=request.model or str(self.model_dir),
            prompt_tokens=answer.prompt_tokens,
            tokens=answer.tokens,
            logprobs=request.logprobs,
        )
        return HTTPStatus.OK, response

    def invoke_endpoint(self, name: str, body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """SageMaker Runtime InvokeEndpoint semantics around `invoke` (error shapes botocore understands)."""
        if self.endpoint_name is not None and name != self.endpoint_name:
            message = f"Endpoint {name} of account {_LOCAL_ACCOUNT} not found."
            return HTTPStatus.BAD_REQUEST, {"message": message}, {"x-amzn-ErrorType": "ValidationError"}
        status, payload = self.invoke(body)
        if status == HTTPStatus.OK:
            return status, payload, {"x-Amzn-Invoked-Production-Variant": "AllTraffic"}
        original = json.dumps(payload)
        kind = "client" if 400 <= status < 500 else "server"
        message = f'Received {kind} error ({int(status)}) from primary with message "{original}".'
        error = {"ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL", "OriginalStatusCode": int(status)}
        return (
            HTTPStatus.FAILED_DEPENDENCY,
            {"message": message, "OriginalMessage": original, **error},
            {"x-amzn-ErrorType": "ModelError"},
        )


class _Handler(BaseHTTPRequestHandler):
    server_version = "LocalLMI/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses connections

    @property
    def app(self) -> LocalServer:
        return self.server.app  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/ping":
            status, payload = self.app.ping()
            self._reply(status, payload)
        elif self._known_path():
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, _error("use POST for invocations", 405), {"Allow": "POST"})
        else:
            self._reply(
                HTTPStatus.NOT_FOUND, _error(f"no route {self.path}; use GET /ping or POST /invocations", 404)
            )

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        runtime = _RUNTIME_PATH_RE.match(path)
        if path == "/ping":
            self._discard_body()
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, _error("use GET /ping", 405), {"Allow": "GET"})
            return
        if path != "/invocations" and runtime is None:
            self._discard_body()
            self._reply(HTTPStatus.NOT_FOUND, _error(f"no route {path}; use POST /invocations", 404))
            return
        body, failure = self._read_body()
        if failure is None:
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type not in _JSON_TYPES:
                failure = RequestError(
                    f"Content-Type {content_type!r} is not supported; send application/json", status=415
                )
        if runtime is not None:
            if failure is not None:
                status, payload, headers = self._runtime_failure(failure)
            else:
                status, payload, headers = self.app.invoke_endpoint(runtime.group("name"), body)
            self._reply(status, payload, headers)
            return
        if failure is not None:
            self._reply(failure.status, failure.to_json())
            return
        status, payload = self.app.invoke(body)
        self._reply(status, payload)

    def _runtime_failure(self, failure: RequestError) -> tuple[int, dict[str, Any], dict[str, str]]:
        # What SageMaker Runtime itself refuses before reaching a container.
        code = "ValidationError" if failure.status != 413 else "PayloadTooLarge"
        return failure.status, {"message": failure.message}, {"x-amzn-ErrorType": code}

    def _known_path(self) -> bool:
        path = self.path.split("?")[0]
        return path == "/invocations" or _RUNTIME_PATH_RE.match(path) is not None

    def _read_body(self) -> tuple[bytes, RequestError | None]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            return b"", RequestError("chunked request bodies are not supported; send Content-Length", status=411)
        length_text = self.headers.get("Content-Length")
        try:
            length = int(length_text) if length_text is not None else None
        except ValueError:
            length = None
        if length is None or length < 0:
            self.close_connection = True
            return b"", RequestError("a Content-Length header is required", status=411)
        if length > MAX_REQUEST_BYTES:
            # Not read: the connection is closed instead, so a huge body cannot tie the server up.
            self.close_connection = True
            return b"", RequestError(
                f"request body is {length:,} bytes; the limit is {MAX_REQUEST_BYTES:,} (SageMaker real-time)",
                status=413,
            )
        return self.rfile.read(length), None

    def _discard_body(self) -> None:
        length_text = self.headers.get("Content-Length") or "0"
        length = int(length_text) if length_text.isdigit() else 0
        if 0 < length <= MAX_REQUEST_BYTES:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _reply(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(int(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def _error(message: str, status: int) -> dict[str, Any]:
    return RequestError(message, status=status).to_json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_code.local_server",
        description="Serve a saved LLaVA-NeXT model directory on CPU behind the SageMaker container contract "
        "(GET /ping, POST /invocations) with the production endpoint's chat request/response.",
    )
    parser.add_argument("--model-dir", required=True, type=Path, help="saved model (training output)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument(
        "--endpoint-name",
        default=None,
        help="answer /endpoints/<name>/invocations only for this name (default: any name)",
    )
    parser.add_argument(
        "--taxonomy",
        type=Path,
        default=None,
        help="choices for requests without structured_outputs (default: MODEL_DIR/taxonomy.json if present)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="log errors only, not every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(asctime)s %(message)s")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be within 0..65535")
    if not (args.model_dir / "config.json").is_file():
        parser.error(f"--model-dir {args.model_dir} has no config.json: not a saved model directory")
    choices = None
    if args.taxonomy is not None:
        from classification.contract import InvalidTaxonomy, Taxonomy

        try:
            choices = Taxonomy.load(args.taxonomy).choices
        except InvalidTaxonomy as error:
            parser.error(str(error))
    try:
        server = LocalServer(
            args.model_dir,
            host=args.host,
            port=args.port,
            endpoint_name=args.endpoint_name,
            default_choices=choices,
            threads=args.threads,
        )
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    # SageMaker stops containers with SIGTERM; both signals shut down cleanly.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    print(f"listening on {server.url} (GET /ping, POST /invocations); loading {args.model_dir} ...", flush=True)
    try:
        server.wait_until_ready(timeout=3600)
        print(f"ready: {server.url}", flush=True)
        while not stop.wait(0.5):
            pass
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
