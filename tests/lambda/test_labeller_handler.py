"""The labeller in-process against moto: S3 notification -> SQS -> handler -> endpoint -> DynamoDB."""

from __future__ import annotations

import base64
import io
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import boto3
import handler
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
from labeller_aws import (
    MODEL_PARAMETER_MAX_AGE_SECONDS,
    DynamoLabelStore,
    S3ObjectStore,
    SageMakerEndpoint,
    SsmModelRegistry,
)
from labeller_core import Labeller, LabellerConfig, StoredObject
from labeller_testkit import (
    BUCKET,
    ENDPOINT,
    MODEL_ID,
    REGION,
    TABLE,
    Aws,
    FakeContext,
    photo,
    queue_endpoint_reply,
    vllm_answer,
)
from PIL import Image

from classification.contract import Taxonomy
from local_aws.lambda_runner import sqs_event
from local_aws.photos import PALETTE

LABELS = Taxonomy.load().labels


def make_queue(aws: Aws, name: str = "uploads", max_receive: int = 20) -> tuple[str, str]:
    """A queue with a DLQ, subscribed to the bucket's ObjectCreated events under uploads/ (as the stack does)."""
    dlq = aws.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = aws.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = aws.sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}),
        },
    )["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
                }
            ]
        },
    )
    return queue, dlq


def receive(aws: Aws, queue: str) -> list[dict[str, Any]]:
    return aws.sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
    ).get("Messages", [])


def lambda_event(messages: list[dict[str, Any]], queue_arn: str = "arn:aws:sqs:us-east-1:1:uploads") -> dict:
    """What the SQS event source mapping hands the function for these messages."""
    return sqs_event(messages, queue_arn=queue_arn, region=REGION)


def run_batch(messages: list[dict[str, Any]]) -> set[str]:
    """Invoke the handler; the ids of the messages it reports failed (all of them if the whole batch failed)."""
    try:
        response = handler.lambda_handler(lambda_event(messages), FakeContext())
    except BatchProcessingError:
        return {message["MessageId"] for message in messages}
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}


def drain(aws: Aws, queue: str, *, max_rounds: int = 200) -> int:
    """Play the event source mapping: deliver, delete what succeeded, make failures visible again."""
    rounds = 0
    while rounds < max_rounds:
        messages = receive(aws, queue)
        if not messages:
            return rounds
        rounds += 1
        failed = run_batch(messages)
        for message in messages:
            if message["MessageId"] in failed:
                aws.sqs.change_message_visibility(
                    QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                aws.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError(f"queue not drained after {max_rounds} rounds")


def log_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines


def emitted_metrics(lines: list[dict[str, Any]]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for line in lines:
        for directive in line.get("_aws", {}).get("CloudWatchMetrics", []):
            for metric in directive["Metrics"]:
                value = line[metric["Name"]]
                totals[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return totals


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
    store = DynamoLabelStore(aws.dynamodb, handler.os.environ["TABLE_NAME"])
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
        LabellerConfig.from_env(handler.os.environ),
        objects=S3ObjectStore(aws.s3),
        endpoint=SageMakerEndpoint(flaky, ENDPOINT),
        labels=DynamoLabelStore(aws.dynamodb, handler.os.environ["TABLE_NAME"]),
    )
    monkeypatch.setattr(handler, "get_labeller", lambda: labeller)
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


def test_backfill_labels_new_items_skips_finished_ones_and_reports_counts(aws: Aws) -> None:
    # Given one photo already labelled by this model, one new photo, one foreign key and one malformed item
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h9/old.jpg", Body=photo((0, 0, 0)))
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h9/new.jpg", Body=photo((0, 0, 120)))
    queue_endpoint_reply(vllm_answer("Lobby"))
    queue_endpoint_reply(vllm_answer("Bar"))
    event = {
        "Items": [{"Key": "uploads/h9/old.jpg"}],
        "BatchInput": {"bucket": BUCKET, "reclassify": False},
    }
    assert handler.backfill_handler(event, FakeContext())["labeled"] == 1

    # When a listing batch (quoted ETags, as ListObjectsV2 gives them) is backfilled
    etag = aws.s3.head_object(Bucket=BUCKET, Key="uploads/h9/old.jpg")["ETag"]
    event = {
        "Items": [
            {"Key": "uploads/h9/old.jpg", "ETag": etag},
            {"Key": "uploads/h9/new.jpg"},
            {"Key": "archive/h9/x.jpg"},
            {"ETag": "no key"},
        ],
        "BatchInput": {"bucket": BUCKET, "reclassify": False},
    }
    summary = handler.backfill_handler(event, FakeContext())

    # Then the finished photo is skipped, the new one labelled, and the counts say so
    assert summary == {
        "items": 4,
        "invalid": 1,
        "labeled": 1,
        "needs_review": 0,
        "rejected": 0,
        "missing": 0,
        "skipped": 2,
        "transient": 0,
        "deferred": 0,
    }
    assert aws.item("uploads/h9/new.jpg")["label"] == "Bar"  # type: ignore[index]


def test_backfill_raises_a_retryable_error_after_the_batch_when_time_ran_out_or_items_failed(aws: Aws) -> None:
    # Given two photos and a batch naming both
    for name, color in (("a", (240, 0, 0)), ("b", (0, 240, 0))):
        aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/h8/{name}.jpg", Body=photo(color))
    event = {
        "Items": [{"Key": "uploads/h8/a.jpg"}, {"Key": "uploads/h8/b.jpg"}],
        "BatchInput": {"bucket": BUCKET},
    }

    # When the invocation is nearly out of time
    # Then it labels one item, defers the other and asks the map to retry
    queue_endpoint_reply(vllm_answer("Room"))
    with pytest.raises(handler.TransientBatchError, match="1 were not reached"):
        handler.backfill_handler(event, FakeContext(remaining_ms=1_000))
    assert aws.item("uploads/h8/a.jpg")["label"] == "Room"  # type: ignore[index]
    assert aws.item("uploads/h8/b.jpg") is None

    # When the retry meets an endpoint that answers garbage (moto's default reply is not a chat completion)
    # Then the finished item is skipped, the other fails, and the error comes after the whole batch
    with pytest.raises(handler.TransientBatchError, match="1 item"):
        handler.backfill_handler(event, FakeContext())
    assert aws.item("uploads/h8/b.jpg") is None


# -- backfill item shapes and the model registry ------------------------------------------------------------------

PARAMETER = "/hotel-photos/model/current"
RUN_1 = "s3://hotel-photos-training/models/run-1/"
RUN_2 = "s3://hotel-photos-training/models/run-2/"


class CountingObjects(S3ObjectStore):
    """The real S3 data access, counting downloads (GetObject calls)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.downloads = 0

    def get(self, bucket: str, key: str, *, if_match: str | None, max_bytes: int) -> StoredObject:
        self.downloads += 1
        return super().get(bucket, key, if_match=if_match, max_bytes=max_bytes)


def use_labeller(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, *, model_id: Callable[[], str] | None = None
) -> CountingObjects:
    """Serve the handler a labeller on moto whose downloads are counted (and whose model source is given)."""
    objects = CountingObjects(aws.s3)
    labeller = Labeller(
        LabellerConfig.from_env(handler.os.environ),
        objects=objects,
        endpoint=SageMakerEndpoint(boto3.client("sagemaker-runtime", region_name=REGION), ENDPOINT),
        labels=DynamoLabelStore(aws.dynamodb, TABLE),
        model_id=model_id,
    )
    monkeypatch.setattr(handler, "get_labeller", lambda: labeller)
    return objects


def listing_items(aws: Aws, prefix: str) -> list[dict[str, Any]]:
    """The items the Step Functions ListObjectsV2 reader hands the map: `Etag` (quoted), epoch `LastModified`."""
    contents = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    return [
        {
            "Etag": entry["ETag"],
            "Key": entry["Key"],
            "LastModified": entry["LastModified"].timestamp(),
            "Size": entry["Size"],
            "StorageClass": entry["StorageClass"],
        }
        for entry in contents
    ]


def test_a_resumed_listing_backfill_costs_one_table_read_per_finished_photo_not_a_download(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a backfill over three photos that stopped after labelling two of them
    for name, color in (("a", (240, 0, 0)), ("b", (0, 240, 0)), ("c", (0, 0, 240))):
        aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/h6/{name}.jpg", Body=photo(color))
    items = listing_items(aws, "uploads/h6/")
    assert all(item["Etag"].startswith('"') for item in items)  # the shape the reader really emits
    batch_input = {"bucket": BUCKET, "reclassify": False}
    queue_endpoint_reply(vllm_answer("Room"))
    queue_endpoint_reply(vllm_answer("Pool"))
    use_labeller(aws, monkeypatch)
    assert handler.backfill_handler({"Items": items[:2], "BatchInput": batch_input}, FakeContext())["labeled"] == 2

    # When the backfill is started again over the same listing
    objects = use_labeller(aws, monkeypatch)
    queue_endpoint_reply(vllm_answer("Spa"))
    summary = handler.backfill_handler({"Items": items, "BatchInput": batch_input}, FakeContext())

    # Then the finished photos are skipped on their ETag alone: only the unfinished one is downloaded
    assert (summary["skipped"], summary["labeled"], objects.downloads) == (2, 1, 1)
    assert [aws.item(f"uploads/h6/{name}.jpg")["label"] for name in "abc"] == ["Room", "Pool", "Spa"]  # type: ignore[index]


def test_an_inventory_backfill_labels_the_decoded_keys_and_an_unknown_key_encoding_writes_nothing(
    aws: Aws,
) -> None:
    # Given a photo whose key has a space and a plus, listed in an S3 Inventory CSV report (URL-encoded keys)
    key = "uploads/h7/sea view+1.jpg"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo((120, 120, 0)))
    head = aws.s3.head_object(Bucket=BUCKET, Key=key)
    row = {
        "Bucket": BUCKET,
        "Key": quote_plus(key, safe="/"),
        "Size": str(head["ContentLength"]),
        "LastModifiedDate": head["LastModified"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "ETag": head["ETag"].strip('"'),
    }
    assert row["Key"] == "uploads/h7/sea+view%2B1.jpg"

    # When a batch of it arrives with a key_encoding the handler does not know
    # Then the whole batch is refused with a clear error, before anything is read or written
    with pytest.raises(ValueError, match="key_encoding"):
        handler.backfill_handler(
            {"Items": [row], "BatchInput": {"bucket": BUCKET, "key_encoding": "percent"}}, FakeContext()
        )
    assert aws.items() == []

    # When it arrives as the manifest map sends it (key_encoding "url")
    queue_endpoint_reply(vllm_answer("Terrace/Patio"))
    summary = handler.backfill_handler(
        {"Items": [row], "BatchInput": {"bucket": BUCKET, "reclassify": False, "key_encoding": "url"}},
        FakeContext(),
    )

    # Then the photo is labelled under its real key, and no item exists under the encoded one
    assert summary["labeled"] == 1
    item = aws.item(key)
    assert item is not None and (item["label"], item["hotel_id"]) == ("Terrace/Patio", "h7")
    assert len(aws.items()) == 1


def warnings_logged() -> list[str]:
    lines = log_lines(handler.logger.registered_handler.stream.getvalue())
    return [line["message"] for line in lines if line.get("level") == "WARNING"]


def test_with_a_model_registry_labels_name_model_id_until_a_model_is_registered_then_the_registered_one(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function is configured with the registry parameter, which no training run has written yet
    monkeypatch.setenv("MODEL_PARAMETER_NAME", PARAMETER)
    for name, color in (("a", (0, 120, 120)), ("b", (120, 0, 120)), ("c", (120, 120, 240))):
        aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/h5/{name}.jpg", Body=photo(color))
    queue_endpoint_reply(vllm_answer("Bar"))
    queue_endpoint_reply(vllm_answer("Bar"))
    batch_input = {"bucket": BUCKET, "reclassify": False}

    # When two photos are labelled
    items = [{"Key": "uploads/h5/a.jpg"}, {"Key": "uploads/h5/b.jpg"}]
    assert handler.backfill_handler({"Items": items, "BatchInput": batch_input}, FakeContext())["labeled"] == 2

    # Then both record MODEL_ID, and one warning says why
    assert [aws.item(f"uploads/h5/{n}.jpg")["model"] for n in "ab"] == [MODEL_ID, MODEL_ID]  # type: ignore[index]
    assert [message for message in warnings_logged() if PARAMETER in message] == [
        f"model registry parameter {PARAMETER} does not exist (no model registered yet): recording MODEL_ID "
        f"'{MODEL_ID}' as the model"
    ]

    # When the pipeline registers a model and a new execution environment labels the next photo
    boto3.client("ssm", region_name=REGION).put_parameter(Name=PARAMETER, Value=RUN_1, Type="String")
    handler.get_labeller.cache_clear()
    queue_endpoint_reply(vllm_answer("Bar"))
    handler.backfill_handler({"Items": [{"Key": "uploads/h5/c.jpg"}], "BatchInput": batch_input}, FakeContext())

    # Then it records the registered model
    assert aws.item("uploads/h5/c.jpg")["model"] == RUN_1  # type: ignore[index]


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_after_a_new_model_is_registered_a_reclassify_backfill_relabels_once_the_cache_expired(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a photo labelled by run 1, the model the registry names
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=PARAMETER, Value=RUN_1, Type="String")
    clock = ManualClock()
    use_labeller(aws, monkeypatch, model_id=SsmModelRegistry(ssm, PARAMETER, fallback=MODEL_ID, clock=clock))
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h4/a.jpg", Body=photo((240, 240, 0)))
    event = {"Items": [{"Key": "uploads/h4/a.jpg"}], "BatchInput": {"bucket": BUCKET, "reclassify": True}}
    queue_endpoint_reply(vllm_answer("Room"))
    handler.backfill_handler(event, FakeContext())
    assert aws.item("uploads/h4/a.jpg")["model"] == RUN_1  # type: ignore[index]

    # When run 2 is registered and a reclassify backfill runs within the cache period
    ssm.put_parameter(Name=PARAMETER, Value=RUN_2, Type="String", Overwrite=True)
    clock.now += MODEL_PARAMETER_MAX_AGE_SECONDS - 1
    # Then the photo still counts as done for the cached run 1: skipped, not sent to the endpoint
    assert handler.backfill_handler(event, FakeContext())["skipped"] == 1

    # When the cache has expired
    clock.now += 1
    summary = handler.backfill_handler(event, FakeContext())  # moto answers an identical request as before

    # Then the photo is labelled again (the endpoint was called) and the item names run 2
    assert summary["labeled"] == 1
    item = aws.item("uploads/h4/a.jpg")
    assert item is not None and (item["label"], item["model"]) == ("Room", RUN_2)


class ThrottledSsm:
    def get_parameter(self, **params: Any) -> dict[str, Any]:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}, "ResponseMetadata": {}},
            "GetParameter",
        )


def test_a_registry_fault_fails_only_that_record_and_its_redelivery_labels_the_photo(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an upload, and SSM throttling the registry read
    queue, _ = make_queue(aws)
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h3/a.jpg", Body=photo((0, 0, 0)))
    messages = [m for m in receive(aws, queue) if "Records" in m["Body"]]
    use_labeller(aws, monkeypatch, model_id=SsmModelRegistry(ThrottledSsm(), PARAMETER, fallback=MODEL_ID))

    # When the notification is processed
    failed = run_batch(messages)

    # Then the record fails (SQS redelivers it), nothing is written, and the fault is counted
    assert failed == {messages[0]["MessageId"]}
    assert aws.item("uploads/h3/a.jpg") is None
    assert emitted_metrics(log_lines(capsys.readouterr().out))["TransientFailures"] == 1

    # When it is redelivered after SSM recovered
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=PARAMETER, Value=RUN_1, Type="String")
    use_labeller(aws, monkeypatch, model_id=SsmModelRegistry(ssm, PARAMETER, fallback=MODEL_ID))
    queue_endpoint_reply(vllm_answer("Pool"))

    # Then the photo is labelled under the registered model
    assert run_batch(messages) == set()
    assert aws.item("uploads/h3/a.jpg")["model"] == RUN_1  # type: ignore[index]


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
    from stacks import constants

    assert handler.RECORD_WORST_CASE_MS == constants.LABELLER_RECORD_WORST_CASE_SECONDS * 1000
