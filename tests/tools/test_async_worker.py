"""The local async endpoint: boto3's InvokeEndpointAsync over HTTP in, the model server's answer in S3 and
SageMaker's notification in the queue out; failures as SageMaker reports them."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tools.async_worker import LocalAsyncEndpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lambda"))
from async_messages import parse_notification

REGION = "us-east-1"
BUCKET = "photo-labeler-async"
ENDPOINT = "photo-labeler-llava"
ANSWER = {"choices": [{"message": {"content": " this is a photo of Pool."}}]}


class ModelStub(BaseHTTPRequestHandler):
    """POST /invocations: the answer, or 500 when the request asks for it; records what it was sent."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ModelStub.received.append(body)
        status, data = (500, b'{"error": "boom"}') if b"fail" in body else (200, json.dumps(ANSWER).encode())
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def model_url() -> Iterator[str]:
    ModelStub.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModelStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def local(model_url: str, aws_env: None) -> Iterator[tuple[LocalAsyncEndpoint, Any, Any, str]]:
    with mock_aws():
        s3, sqs = boto3.client("s3", region_name=REGION), boto3.client("sqs", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        queue = sqs.create_queue(QueueName="completions")["QueueUrl"]
        worker = LocalAsyncEndpoint(
            s3=s3, sqs=sqs, queue_url=queue, endpoint_name=ENDPOINT, bucket=BUCKET, model_url=model_url
        )
        with worker:
            yield worker, s3, sqs, queue


def runtime(worker: LocalAsyncEndpoint) -> Any:
    """A real boto3 sagemaker-runtime client, as the Lambda makes it with AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME."""
    return boto3.client("sagemaker-runtime", region_name=REGION, endpoint_url=worker.url)


def messages(sqs: Any, queue: str) -> list[str]:
    found = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in found]


def test_a_request_in_s3_is_answered_in_s3_and_notified_like_sagemaker(local: tuple[Any, Any, Any, str]) -> None:
    worker, s3, sqs, queue = local
    request = b'{"messages": [], "photo": "pool"}'
    s3.put_object(Bucket=BUCKET, Key="requests/abc/request.json", Body=request)

    response = runtime(worker).invoke_endpoint_async(
        EndpointName=ENDPOINT, InputLocation=f"s3://{BUCKET}/requests/abc/request.json", InferenceId="abc"
    )
    assert worker.wait_idle(timeout=30)

    # The model got the request bytes unchanged; its answer is where the 202 said it would be
    assert ModelStub.received == [request]
    assert response["InferenceId"] == "abc"
    key = response["OutputLocation"].removeprefix(f"s3://{BUCKET}/")
    assert key.startswith("responses/")
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) == ANSWER
    # and the label writer's parser reads the notification
    (body,) = messages(sqs, queue)
    notification = parse_notification(body)
    assert (notification.succeeded, notification.inference_id, notification.output_location) == (
        True,
        "abc",
        response["OutputLocation"],
    )
    assert notification.input_location == f"s3://{BUCKET}/requests/abc/request.json"
    assert (worker.stats.submissions, worker.stats.inferences, worker.stats.duplicate_submissions) == (1, 1, 0)


def test_a_model_error_or_a_missing_input_is_a_failed_inference(local: tuple[Any, Any, Any, str]) -> None:
    worker, s3, sqs, queue = local
    s3.put_object(Bucket=BUCKET, Key="requests/bad/request.json", Body=b'{"fail": true}')
    client = runtime(worker)
    client.invoke_endpoint_async(
        EndpointName=ENDPOINT, InputLocation=f"s3://{BUCKET}/requests/bad/request.json", InferenceId="bad"
    )
    client.invoke_endpoint_async(
        EndpointName=ENDPOINT, InputLocation=f"s3://{BUCKET}/requests/none/request.json", InferenceId="none"
    )
    client.invoke_endpoint_async(
        EndpointName=ENDPOINT, InputLocation=f"s3://{BUCKET}/requests/bad/request.json", InferenceId="bad"
    )
    assert worker.wait_idle(timeout=30)
    notifications = {}
    for body in messages(sqs, queue):
        note = parse_notification(body)
        notifications.setdefault(note.inference_id, []).append(note)
    assert not any(n.succeeded for notes in notifications.values() for n in notes)
    assert "(500)" in (notifications["bad"][0].failure_reason or "")
    assert "cannot read the input" in (notifications["none"][0].failure_reason or "")
    failure_key = (notifications["bad"][0].failure_location or "").removeprefix(f"s3://{BUCKET}/")
    assert b"500" in s3.get_object(Bucket=BUCKET, Key=failure_key)["Body"].read()
    assert (worker.stats.submissions, worker.stats.failed, worker.stats.duplicate_submissions) == (3, 3, 1)


def test_an_unknown_endpoint_or_a_request_without_input_location_is_refused(
    local: tuple[Any, Any, Any, str],
) -> None:
    worker, _s3, _sqs, _queue = local
    with pytest.raises(ClientError, match="not found"):
        runtime(worker).invoke_endpoint_async(EndpointName="other", InputLocation=f"s3://{BUCKET}/r.json")
    with pytest.raises(ClientError, match="not an s3://"):
        runtime(worker).invoke_endpoint_async(EndpointName=ENDPOINT, InputLocation="file:///etc/passwd")
    assert worker.stats.submissions == 0


def test_the_worker_needs_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        LocalAsyncEndpoint(
            s3=None,
            sqs=None,
            queue_url="q",
            endpoint_name=ENDPOINT,
            bucket=BUCKET,
            model_url="http://x",
            max_concurrent_invocations=0,
        )
