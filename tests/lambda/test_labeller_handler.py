"""The labeller in-process against moto: S3 notification -> SQS -> handler -> endpoint -> DynamoDB."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import time
from collections import Counter
from typing import Any

import handler
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
from handler_testkit import drain, emitted_metrics, lambda_event, log_lines, make_queue, receive, run_batch
from labeller_aws import DynamoLabelStore, S3ObjectStore, SageMakerEndpoint
from labeller_core import Labeller
from labeller_testkit import (
    BUCKET,
    ENDPOINT,
    MODEL_ID,
    Aws,
    FakeContext,
    labeller_config,
    photo,
    queue_endpoint_reply,
    vllm_answer,
)
from PIL import Image

from classification.contract import Taxonomy
from local_aws.photos import PALETTE

LABELS = Taxonomy.load().labels


def test_an_upload_travels_from_the_s3_notification_to_one_label_in_the_table(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the bucket notifies the queue, and a photo is uploaded under a key with a space and a plus
    queue, dlq = make_queue(aws)
    key = "uploads/h-42/sea view+1.jpg"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo((0, 120, 240)))
    queue_endpoint_reply(vllm_answer("Terrace/Patio", logprob=-0.1))

    # When the real messages (S3's test event and the URL-encoded ObjectCreated record) reach the handler
    messages = receive(aws, queue)
    assert any("s3:TestEvent" in m["Body"] for m in messages) and any("%2B" in m["Body"] for m in messages)
    failed = run_batch(messages)

    # Then nothing fails and the table holds exactly one labelled item for the photo, with its version
    assert failed == set()
    item = aws.item(key)
    head = aws.s3.head_object(Bucket=BUCKET, Key=key)
    assert item is not None
    assert (item["status"], item["label"], item["hotel_id"], item["model"]) == (
        "LABELED",
        "Terrace/Patio",
        "h-42",
        MODEL_ID,
    )
    assert float(item["confidence"]) == pytest.approx(0.904837, abs=1e-6)
    assert item["etag"] == head["ETag"].strip('"')
    assert item["source_last_modified"].startswith(head["LastModified"].strftime("%Y-%m-%dT%H:%M:%S"))
    assert item["classified_at"].endswith("+00:00")
    assert len(aws.items()) == 1
    # and every log line about the photo names it, with the metrics of docs/interfaces.md
    logs = log_lines(handler.logger.registered_handler.stream.getvalue())
    processed = [line for line in logs if line.get("message") == "photo processed"]
    assert [line["image_uri"] for line in processed] == [f"s3://{BUCKET}/{key}"]
    metrics = emitted_metrics(log_lines(capsys.readouterr().out))
    assert metrics["PhotosLabeled"] == 1 and metrics["PhotosByLabel"] == 1 and metrics["PhotosSkipped"] == 1
    assert metrics["EndpointLatency"] > 0

    # When the same notification is delivered again (at-least-once delivery)
    # Then it succeeds without calling the endpoint (no reply is queued: a call would fail the record)
    assert run_batch(messages) == set()
    assert aws.item(key) == item
    assert (
        aws.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "0"
    )


def test_a_newer_version_replaces_the_label_and_a_late_event_of_the_old_one_does_not(aws: Aws) -> None:
    # Given a photo labelled Room, then overwritten by another photo
    queue, _ = make_queue(aws)
    key = "uploads/h1/photo.jpg"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo((0, 0, 0)))
    first = [m for m in receive(aws, queue) if "Records" in m["Body"]]
    queue_endpoint_reply(vllm_answer("Room"))
    assert run_batch(first) == set()
    time.sleep(1.01)  # S3's LastModified has 1-s resolution
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo((240, 240, 240)))
    second = receive(aws, queue)
    queue_endpoint_reply(vllm_answer("Pool"))

    # When the new version's event is processed, and then the old event is delivered again late
    assert run_batch(second) == set()
    assert run_batch(first) == set()

    # Then the table describes the newer version only
    item = aws.item(key)
    assert item is not None and item["label"] == "Pool"
    assert item["etag"] == aws.s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')


def test_an_older_result_never_overwrites_a_newer_one_even_when_written_last(aws: Aws) -> None:
    # Given a labeller that read version 1, while version 2 was labelled in the meantime
    store = DynamoLabelStore(aws.dynamodb, os.environ["TABLE_NAME"])
    newer = {
        "image_uri": f"s3://{BUCKET}/uploads/h/x.jpg",
        "status": "LABELED",
        "label": "Pool",
        "model": MODEL_ID,
        "etag": "v2",
        "source_last_modified": "2026-11-25T12:00:05.000000Z",
        "classified_at": "2026-11-25T12:00:09.000+00:00",
    }
    older = {**newer, "label": "Room", "etag": "v1", "source_last_modified": "2026-11-25T12:00:01.000000Z"}
    finals = ("LABELED", "NEEDS_REVIEW", "REJECTED")
    assert store.put_result(newer, final_statuses=finals)

    # When version 1's result arrives last, or version 2's result is written a second time
    # Then neither is written
    assert not store.put_result(older, final_statuses=finals)
    assert not store.put_result({**newer, "label": "Bar"}, final_statuses=finals)
    assert aws.item("uploads/h/x.jpg")["label"] == "Pool"  # type: ignore[index]

    # When a different version stored within the same second (1-s LastModified) replaces it: the reader
    # pinned that version with If-Match, so it was current when read
    same_second = {**newer, "label": "Spa", "etag": "v3"}
    assert store.put_result(same_second, final_statuses=finals)
    assert aws.item("uploads/h/x.jpg")["label"] == "Spa"  # type: ignore[index]
    # and a MISSING record never erases a label
    assert not store.put_missing({"image_uri": newer["image_uri"], "status": "MISSING", "classified_at": "x"})


def _bad_inputs() -> dict[str, tuple[bytes, str]]:
    text = b"hotel brochure text, not a photo"
    good = photo((120, 0, 0), size=(800, 600))
    return {
        "empty.jpg": (b"", "empty file"),
        "notes.jpg": (text, "not an image"),
        "cut.jpg": (good[: len(good) // 2], "truncated"),
        "iphone.heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "HEIC"),
        "scan.ppm": (b"P6\n4 4\n255\n" + b"\x00" * 48, "unsupported image format PPM"),
    }


def test_each_bad_input_ends_in_its_documented_status_and_the_batch_continues(aws: Aws) -> None:
    # Given a batch with every kind of bad input, a vanished object, a foreign key, a poison message
    # and one good photo
    queue, _ = make_queue(aws)
    for name, (body, _) in _bad_inputs().items():
        aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/h2/{name}", Body=body)
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h2/gone.jpg", Body=photo((0, 0, 0)))
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h2/good.jpg", Body=photo((0, 240, 0)))
    messages = []
    while batch := receive(aws, queue):
        messages += batch
        for message in batch:
            aws.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    aws.s3.delete_object(Bucket=BUCKET, Key="uploads/h2/gone.jpg")
    template = next(m for m in messages if "good.jpg" in m["Body"])
    foreign = {**template, "MessageId": "foreign", "Body": template["Body"].replace("uploads%2F", "other%2F")}
    poison = {**template, "MessageId": "poison", "Body": "hello"}
    queue_endpoint_reply(vllm_answer("Spa"))

    # When they are processed in one invocation (two batches of at most 10, as SQS delivers them)
    everything = [*messages, foreign, poison]
    failed = run_batch(everything[:10]) | run_batch(everything[10:])

    # Then only the poison message fails (to reach the DLQ); every photo has its documented status
    assert failed == {"poison"}
    for name, (_, reason) in _bad_inputs().items():
        item = aws.item(f"uploads/h2/{name}")
        assert item is not None and item["status"] == "REJECTED", name
        assert reason in item["reason"] and "label" not in item
    gone = aws.item("uploads/h2/gone.jpg")
    assert gone is not None and gone["status"] == "MISSING" and "no longer exists" in gone["reason"]
    good = aws.item("uploads/h2/good.jpg")
    assert good is not None and (good["status"], good["label"]) == ("LABELED", "Spa")
    assert aws.item("other/h2/good.jpg") is None
    # and the by-status index finds the rejected photos
    rejected = aws.dynamodb.query(
        TableName="photo-labels",
        IndexName="by-status",
        KeyConditionExpression="#s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "REJECTED"}},
    )
    assert rejected["Count"] == len(_bad_inputs())


class FlakyRuntime:
    """A sagemaker-runtime client that fails like a busy LMI endpoint, else answers by the photo's colour."""

    FAULTS = ("throttle", "not-ready", "503", "model-500", "read-timeout", "connection", "html", "off-taxonomy")

    def __init__(self, failure_rate: float, seed: int) -> None:
        self.failure_rate = failure_rate
        self.random = random.Random(seed)
        self.faults: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        assert params["EndpointName"] == ENDPOINT and params["ContentType"] == "application/json"
        if self.random.random() < self.failure_rate:
            fault = self.random.choice(self.FAULTS)
            self.faults[fault] += 1
            self._raise_or_reply(fault)
            return self._reply(fault)
        label = self._label_of(json.loads(params["Body"]))
        self.answers[label] += 1
        return self._reply(json.dumps(vllm_answer(label)))

    def _raise_or_reply(self, fault: str) -> None:
        errors = {
            "throttle": ("ThrottlingException", 400),
            "not-ready": ("ModelNotReadyException", 429),
            "503": ("ServiceUnavailable", 503),
            "model-500": ("ModelError", 424),
        }
        if fault in errors:
            code, status = errors[fault]
            raise ClientError(
                {"Error": {"Code": code, "Message": fault}, "ResponseMetadata": {"HTTPStatusCode": status}},
                "InvokeEndpoint",
            )
        if fault == "read-timeout":
            raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker")
        if fault == "connection":
            raise EndpointConnectionError(endpoint_url="https://runtime.sagemaker")

    def _reply(self, fault_or_body: str) -> dict[str, Any]:
        body = {
            "html": "<html>502 Bad Gateway</html>",
            "off-taxonomy": json.dumps(vllm_answer("Kitchen")),
        }.get(fault_or_body, fault_or_body)
        return {"Body": StreamingBody(io.BytesIO(body.encode()), len(body.encode()))}

    @staticmethod
    def _label_of(request: dict[str, Any]) -> str:
        url = request["messages"][0]["content"][1]["image_url"]["url"]
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        color = image.resize((1, 1)).getpixel((0, 0))
        nearest = min(
            range(len(LABELS)), key=lambda i: sum((a - b) ** 2 for a, b in zip(PALETTE[i], color, strict=True))
        )
        return LABELS[nearest]


@pytest.mark.slow
def test_under_heavy_endpoint_faults_every_upload_ends_with_exactly_one_correct_label(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 60 uploads, 10 of them notified twice, and an endpoint failing 40 % of calls in every known way
    queue, dlq = make_queue(aws, max_receive=20)
    flaky = FlakyRuntime(failure_rate=0.4, seed=7)
    labeller = Labeller(
        labeller_config(os.environ),
        objects=S3ObjectStore(aws.s3),
        endpoint=SageMakerEndpoint(flaky, ENDPOINT),
        labels=DynamoLabelStore(aws.dynamodb, os.environ["TABLE_NAME"]),
    )
    monkeypatch.setattr(handler, "get_labeller", lambda **_: labeller)
    expected = {f"uploads/h{i % 5}/photo-{i:02d}.jpg": LABELS[i % len(LABELS)] for i in range(60)}
    for i, key in enumerate(expected):
        aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo(PALETTE[i % len(LABELS)]))
    pending = []
    while batch := receive(aws, queue):
        pending += batch
    for message in pending:
        aws.sqs.change_message_visibility(
            QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    for message in random.Random(1).sample([m for m in pending if "Records" in m["Body"]], 10):
        aws.sqs.send_message(QueueUrl=queue, MessageBody=message["Body"])

    # When the queue is drained the way the event source mapping would (failures redelivered)
    rounds = drain(aws, queue)

    # Then every photo has exactly its label, nothing is in the DLQ, and the endpoint answered each photo
    # exactly once: duplicates and redeliveries of finished photos never reached it
    items = {item["image_uri"]: item for item in aws.items()}
    assert {uri.removeprefix(f"s3://{BUCKET}/"): item["label"] for uri, item in items.items()} == expected
    assert {item["status"] for item in items.values()} == {"LABELED"}
    assert sum(flaky.answers.values()) == len(expected)
    assert flaky.answers == Counter(expected.values())
    assert set(flaky.faults) == set(FlakyRuntime.FAULTS)  # every fault kind was exercised
    assert sum(flaky.faults.values()) >= 0.3 * (sum(flaky.faults.values()) + len(expected))
    assert (
        aws.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "0"
    )
    assert rounds > 1


def test_records_that_no_longer_fit_the_invocation_are_reported_failed_without_being_started(aws: Aws) -> None:
    # Given three uploads and an invocation whose clock runs out after the first record
    queue, _dlq = make_queue(aws)
    for name in ("a", "b", "c"):
        aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/h1/{name}.jpg", Body=photo(PALETTE[len(name)]))
    queue_endpoint_reply(vllm_answer(LABELS[0]))
    messages = [m for m in receive(aws, queue) if "ObjectCreated" in m["Body"]]
    assert len(messages) == 3

    class Clock(FakeContext):
        calls = 0

        def get_remaining_time_in_millis(self) -> int:
            # first check: a full invocation; afterwards: less than one worst-case record
            self.calls += 1
            return 300_000 if self.calls == 1 else handler.RECORD_WORST_CASE_MS - 1

    # When the handler runs the batch
    response = handler.lambda_handler(lambda_event(messages), Clock())
    # Then the first is labelled and the other two are reported failed, never started (SQS delivers them again)
    failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
    assert failed == {m["MessageId"] for m in messages[1:]}
    assert len(aws.items()) == 1


def test_the_record_budget_matches_the_one_synth_checks_the_timeout_against() -> None:
    from stacks.common import constants

    assert handler.RECORD_WORST_CASE_MS == constants.LABELLER_RECORD_WORST_CASE_SECONDS * 1000
