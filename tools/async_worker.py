"""A local stand-in for SageMaker Asynchronous Inference, so the async path runs offline end to end.

It plays the three parts SageMaker plays for an async endpoint:
1. the front end: `POST /endpoints/<name>/async-invocations` (what boto3's `invoke_endpoint_async` sends, with
   the InputLocation and InferenceId headers) answers 202 with the output and failure locations, and queues the
   request;
2. the instance: up to `max_concurrent_invocations` requests at once (AsyncInferenceConfig.ClientConfig) are read
   from S3 and POSTed unchanged to the model server's `/invocations` (vLLM's OpenAI server
   serves it, as the LMI container does);
3. the output: the response (or the failure) is written under the output (or failure) prefix and SageMaker's
   notification JSON is sent to the completion queue, as SNS does with raw message delivery.

Point the Lambda's boto3 at it with `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=<worker url>`; S3 and SQS are whatever the
given clients talk to (moto's server in scripts/demo.py and benchmarks/bench_async_path.py).

    python -m tools.async_worker --model-url http://127.0.0.1:8080 --aws-endpoint-url http://127.0.0.1:5000 \\
        --endpoint-name photo-labeler-llava --bucket photo-labeler-async --queue-url <completion queue url>

Differences from SageMaker, on purpose: no queue TTL or scaling (requests run as soon as a slot is free); the
queue is in memory (a stopped worker loses what it had not run); a model-server error is not retried here.
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ASYNC_PATH_RE = re.compile(r"^/endpoints/(?P<name>[^/]+)/async-invocations$")
DEFAULT_MODEL_TIMEOUT = 120.0  # seconds per request on the model server (SageMaker's default is 15 min)
DEFAULT_CONCURRENCY = 4


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


@dataclass(frozen=True)
class Job:
    inference_id: str
    input_location: str
    output_location: str
    failure_location: str
    received_time: str


@dataclass
class WorkerStats:
    submissions: int = 0  # InvokeEndpointAsync calls accepted
    inferences: int = 0  # requests POSTed to the model server
    succeeded: int = 0
    failed: int = 0
    ids: Counter[str] = field(default_factory=Counter)  # submissions per inference id

    @property
    def duplicate_submissions(self) -> int:
        """Submissions of an inference id already submitted (a retry after a failure counts too)."""
        return sum(count - 1 for count in self.ids.values() if count > 1)


class LocalAsyncEndpoint:
    """The worker; a context manager that serves on 127.0.0.1 and stops its threads on exit."""

    def __init__(
        self,
        *,
        s3: Any,
        sqs: Any,
        queue_url: str,
        endpoint_name: str,
        bucket: str,
        model_url: str,
        output_prefix: str = "responses/",
        failure_prefix: str = "failures/",
        max_concurrent_invocations: int = DEFAULT_CONCURRENCY,
        model_timeout: float = DEFAULT_MODEL_TIMEOUT,
    ) -> None:
        if max_concurrent_invocations < 1:
            raise ValueError(f"max_concurrent_invocations must be >= 1, got {max_concurrent_invocations}")
        self._s3 = s3
        self._sqs = sqs
        self._queue_url = queue_url
        self.endpoint_name = endpoint_name
        self._bucket = bucket
        self._model_url = model_url.rstrip("/")
        self._output_prefix = output_prefix
        self._failure_prefix = failure_prefix
        self._concurrency = max_concurrent_invocations
        self._model_timeout = model_timeout
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._busy = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self.stats = WorkerStats()
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalAsyncEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalAsyncEndpoint:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._threads = [threading.Thread(target=self._server.serve_forever, name="async-front-end", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"async-instance-{i}", daemon=True)
            for i in range(self._concurrency)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for _ in range(self._concurrency):
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    # -- the front end --------------------------------------------------------------------------------------

    def submit(self, input_location: str, inference_id: str | None = None) -> Job:
        """What InvokeEndpointAsync does: validate, name the output, queue the request."""
        _split(input_location)
        identifier = inference_id or str(uuid.uuid4())
        name = uuid.uuid4()  # SageMaker names each output anew
        job = Job(
            inference_id=identifier,
            input_location=input_location,
            output_location=f"s3://{self._bucket}/{self._output_prefix}{name}.out",
            failure_location=f"s3://{self._bucket}/{self._failure_prefix}{name}-error.out",
            received_time=_now(),
        )
        with self._lock:
            self.stats.submissions += 1
            self.stats.ids[identifier] += 1
        self._jobs.put(job)
        return job

    def wait_idle(self, timeout: float) -> bool:
        """True once every queued request has been answered and notified (False after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = self._busy == 0 and self._jobs.empty()
            if idle:
                return True
            time.sleep(0.05)
        return False

    # -- the instance ---------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                self._busy += 1
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._busy -= 1

    def _run(self, job: Job) -> None:
        try:
            bucket, key = _split(job.input_location)
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as error:  # SageMaker reports an unreadable input as a failed inference
            self._fail(job, f"ClientError: cannot read the input {job.input_location}: {error}")
            return
        with self._lock:
            self.stats.inferences += 1
        request = urllib.request.Request(
            f"{self._model_url}/invocations",
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._model_timeout) as response:
                answer = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read()[:500].decode(errors="replace")
            self._fail(job, f"ClientError: Received server error ({error.code}) from model: {detail}")
            return
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            self._fail(job, f"ModelError: the model server did not answer: {error}")
            return
        bucket, key = _split(job.output_location)
        self._s3.put_object(Bucket=bucket, Key=key, Body=answer, ContentType="application/json")
        self._notify(
            job,
            {
                "invocationStatus": "Completed",
                "responseParameters": {"contentType": "application/json", "outputLocation": job.output_location},
            },
        )
        with self._lock:
            self.stats.succeeded += 1

    def _fail(self, job: Job, reason: str) -> None:
        bucket, key = _split(job.failure_location)
        self._s3.put_object(Bucket=bucket, Key=key, Body=reason.encode(), ContentType="text/plain")
        self._notify(
            job,
            {
                "invocationStatus": "Failed",
                "failureReason": reason,
                "responseParameters": {"contentType": "text/plain", "failureLocation": job.failure_location},
            },
        )
        with self._lock:
            self.stats.failed += 1

    def _notify(self, job: Job, outcome: dict[str, Any]) -> None:
        message = {
            "awsRegion": "local",
            "eventTime": _now(),
            "receivedTime": job.received_time,
            "requestParameters": {
                "contentType": "application/json",
                "endpointName": self.endpoint_name,
                "inputLocation": job.input_location,
            },
            "inferenceId": job.inference_id,
            "eventVersion": "1.0",
            "eventSource": "aws:sagemaker",
            "eventName": "InferenceResult",
            **outcome,
        }
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))


def _handler_for(worker: LocalAsyncEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)  # an inline Body is not supported: this project sends InputLocation
            match = _ASYNC_PATH_RE.match(self.path.split("?")[0])
            if match is None:
                self._reply(404, {"message": f"no route {self.path}"})
                return
            if match.group("name") != worker.endpoint_name:
                self._reply(400, {"message": f"Endpoint {match.group('name')} not found."}, "ValidationError")
                return
            location = self.headers.get("X-Amzn-SageMaker-InputLocation")
            if not location:
                self._reply(400, {"message": "InputLocation is required"}, "ValidationError")
                return
            try:
                job = worker.submit(location, self.headers.get("X-Amzn-SageMaker-Inference-Id"))
            except ValueError as error:
                self._reply(400, {"message": str(error)}, "ValidationError")
                return
            self._reply(
                202,
                {"InferenceId": job.inference_id},
                headers={
                    "X-Amzn-SageMaker-OutputLocation": job.output_location,
                    "X-Amzn-SageMaker-FailureLocation": job.failure_location,
                },
            )

        def _reply(
            self,
            status: int,
            body: dict[str, Any],
            error_type: str | None = None,
            headers: dict[str, str] | None = None,
        ) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if error_type:
                self.send_header("x-amzn-ErrorType", error_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # one line per request otherwise

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.async_worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-url", required=True, help="the model server (serves POST /invocations)")
    parser.add_argument("--aws-endpoint-url", required=True, help="S3 and SQS endpoint (e.g. moto's server)")
    parser.add_argument("--endpoint-name", required=True)
    parser.add_argument("--bucket", required=True, help="where responses/ and failures/ are written")
    parser.add_argument("--queue-url", required=True, help="the completion queue (SNS raw delivery's target)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    import boto3

    def client(service: str) -> Any:
        return boto3.client(service, region_name=args.region, endpoint_url=args.aws_endpoint_url)

    try:
        worker = LocalAsyncEndpoint(
            s3=client("s3"),
            sqs=client("sqs"),
            queue_url=args.queue_url,
            endpoint_name=args.endpoint_name,
            bucket=args.bucket,
            model_url=args.model_url,
            max_concurrent_invocations=args.concurrency,
        )
    except ValueError as error:
        parser.error(str(error))
    with worker:
        print(
            f"async endpoint {args.endpoint_name} at {worker.url} (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME)", flush=True
        )
        try:
            while True:
                time.sleep(10)
                stats = worker.stats
                print(
                    f"submissions {stats.submissions}, answered {stats.succeeded}, failed {stats.failed}",
                    flush=True,
                )
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
