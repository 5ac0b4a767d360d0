"""The whole pipeline on one machine, offline, without an AWS account or a GPU.

    python -m scripts.demo [--labels N] [--train-per-label 8] [--upload-per-label 2] [--epochs 3]
                           [--output-dir DIR] [--seed 0] [--[no-]review] [--mode realtime|async]

1. builds a tiny LLaVA-NeXT (training_job/tiny_model.py) and fine-tunes it with the project's own training
   entry point (`python -m training_job.train`, the real config file plus CPU overrides) on generated photos
   whose label is visible in the pixels (one colour per label), prepared by training_job/build_dataset.py;
2. serves it with the real engine, vLLM's CPU build (model_code/vllm_server.py: the serving venv .venv-serve,
   engine args from model_code/serving.properties as LMI maps them, SageMaker Runtime's InvokeEndpoint route);
3. starts AWS emulation (moto's server on 127.0.0.1) with the resources the CDK app defines — versioned image
   bucket, upload queue with its dead-letter queue, labels table with the `by-hotel` and `by-status` indexes —
   and the S3 -> SQS ObjectCreated notification on the upload prefix of cdk.json;
4. uploads new photos of every label plus bad files (corrupt JPEG, zero bytes, text, PDF);
5. drives the real Lambda handler (lambda/handler.py `lambda_handler`, unmodified, its boto3 clients pointed at
   the emulation and the backend through `AWS_ENDPOINT_URL*` variables) from the queue the way Lambda's SQS
   event source does (batches of cdk.json's `batch_size`, partial batch failures left for redelivery) until the
   queue is empty, and prints the labels table and the accuracy against the known labels.
6. in a terminal (or with `--review`; `--no-review` skips it), serves the review page (review_api/local.py,
   LOCAL MODE without sign-in) on the emulated table and bucket and prints its URL: click through the photos
   the model was unsure about; Ctrl-C ends it.

Everything lives in a temporary folder and is removed at the end (servers stopped, threads joined), unless
`--output-dir` keeps the model, dataset, labels.csv and the training, engine and handler logs. Takes ~3 minutes on
2 idle cores (training ~1.5 min, the engine's start ~1 min).

Differences from AWS, on purpose: no KMS (moto does not enforce key policies); the queue's visibility timeout is
a few seconds (the stack's is 6x the function timeout) so a retried message comes back quickly; the Lambda
runtime is this Python process.

`--mode async` runs step 5 as endpoint.mode async does: the same handler submits each photo (request in S3,
InvokeEndpointAsync), tools/async_worker.py plays SageMaker (the model server's /invocations, response in S3,
notification to a second queue), and lambda/async_handler.py writes the labels from the notifications.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from PIL import Image

from classification.contract import Taxonomy

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_DIR = REPO_ROOT / "lambda"
TRAIN_CONFIG = REPO_ROOT / "training_job" / "configs" / "sft_llava_next.yaml"
REGION = "us-east-1"
ENDPOINT_NAME = "photo-labeler-local"
MODEL_ID = "tiny-llava-next-demo"
HOTELS = ("hotel-0001", "hotel-0002", "hotel-0003")
# A retried message comes back after this many seconds (the deployed queue waits 6x the function timeout).
DEMO_VISIBILITY_TIMEOUT = 2  # seconds
DRAIN_TIMEOUT = 600  # seconds: the demo gives up (and says what is left) rather than hang
# CPU training settings (the same overrides as tests/training_job): bf16 and gradient checkpointing are GPU
# settings, and a tiny random model needs a larger learning rate than the seed's 2e-5 to learn in a few epochs.
CPU_TRAINING_ARGS = (
    "--bf16",
    "false",
    "--gradient_checkpointing",
    "false",
    "--dtype",
    "float32",
    "--warmup_steps",
    "0",
    # A constant rate: the seed's linear decay spends half of a short CPU run at a rate too small to matter.
    "--lr_scheduler_type",
    "constant",
    "--save_strategy",
    "no",
    "--dataloader_num_workers",
    "0",
    "--logging_steps",
    "10",
    "--report_to",
    "none",
)
# 27 colours 120 levels apart per channel: far enough apart to survive noise, JPEG and the CLIP resize.
PALETTE = tuple((r, g, b) for r in (0, 120, 240) for g in (0, 120, 240) for b in (0, 120, 240))
NOISE_STD = 25  # per-pixel colour noise, so no two photos are alike
# The tiny model learns 8 colours in ~1.5 minutes of CPU training; all 26 labels need ~3x longer.
DEFAULT_LABELS = 8


# -- photos -------------------------------------------------------------------------------------------------------


def label_colours(taxonomy: Taxonomy) -> dict[str, tuple[int, int, int]]:
    """One palette colour per label, spread over the palette; ValueError beyond 27 labels."""
    count = len(taxonomy.labels)
    if count > len(PALETTE):
        raise ValueError(f"the demo palette distinguishes {len(PALETTE)} labels, the taxonomy has {count}")
    return {label: PALETTE[index * len(PALETTE) // count] for index, label in enumerate(taxonomy.labels)}


def colour_photo(colour: tuple[int, int, int], rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    pixels = np.array(colour, dtype=float)[None, None, :] + rng.normal(0, NOISE_STD, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"))


def encode(image: Image.Image, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def write_training_photos(root: Path, taxonomy: Taxonomy, per_label: int, rng: np.random.Generator) -> Path:
    """A label-folder source for training_job.build_dataset: root/<label>/<n>.jpg."""
    from training_job.build_dataset import folder_key

    colours = label_colours(taxonomy)
    for label in taxonomy.labels:
        folder = root / folder_key(label).replace(" ", "_")  # `Staircase/Elevator` cannot be a folder name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_label):
            # Small photos train fast: the processor scales every photo to the same 336-px tiles anyway.
            (folder / f"{index:03d}.jpg").write_bytes(encode(colour_photo(colours[label], rng, (160, 120))))
    return root


@dataclass(frozen=True)
class Upload:
    key: str
    body: bytes
    expected_label: str | None  # None: a bad file that must be REJECTED


# Camera-like sizes and formats: landscape, portrait, wide, a PNG; the Lambda normalises them all.
_UPLOAD_SHAPES = (((800, 600), "JPEG"), ((600, 800), "JPEG"), ((1280, 720), "JPEG"), ((640, 480), "PNG"))


def make_uploads(
    taxonomy: Taxonomy,
    per_label: int,
    rng: np.random.Generator,
    prefix: str,
    colours: Mapping[str, tuple[int, int, int]] | None = None,
) -> list[Upload]:
    """New photos of every label (never seen in training) plus four bad files, spread over the hotels.

    `colours` (label -> RGB) must be the ones the served model learnt; default: the demo's own palette.
    """
    colours = colours or label_colours(taxonomy)
    uploads = []
    for label_index, label in enumerate(taxonomy.labels):
        for index in range(per_label):
            size, image_format = _UPLOAD_SHAPES[(label_index + index) % len(_UPLOAD_SHAPES)]
            hotel = HOTELS[(label_index + index) % len(HOTELS)]
            # Spaces and a slash-free label in the key: S3 URL-encodes keys in events, the handler decodes them.
            name = f"{label.replace('/', '-')} {index}.{'png' if image_format == 'PNG' else 'jpg'}"
            body = encode(colour_photo(colours[label], rng, size), image_format)
            uploads.append(Upload(f"{prefix}{hotel}/{name}", body, label))
    good = encode(colour_photo(PALETTE[0], rng, (640, 480)))
    uploads += [
        Upload(f"{prefix}{HOTELS[0]}/truncated.jpg", good[: len(good) // 3], None),
        Upload(f"{prefix}{HOTELS[1]}/empty.jpg", b"", None),
        Upload(f"{prefix}{HOTELS[2]}/notes.txt", b"check-in from 3 pm, breakfast 7-10\n", None),
        Upload(f"{prefix}{HOTELS[0]}/brochure.pdf", b"%PDF-1.4\n% not a photo\n", None),
    ]
    return uploads


# -- model --------------------------------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def train_model(
    workdir: Path,
    taxonomy: Taxonomy,
    *,
    per_label: int,
    epochs: int,
    seed: int,
    log: TextIO,
    batch_size: int = 4,
    learning_rate: float = 3e-3,
) -> Path:
    """Tiny model -> dataset -> `python -m training_job.train`; returns the servable model directory."""
    from training_job.build_dataset import build_dataset
    from training_job.tiny_model import build_tiny_model

    rng = np.random.default_rng(seed)
    base = build_tiny_model(workdir / "tiny-base", taxonomy, profile="compact")
    photos = write_training_photos(workdir / "training-photos", taxonomy, per_label, rng)
    dataset = workdir / "dataset"
    # build_dataset's default split holds back at least one photo per label (evaluation needs a validation split).
    report = build_dataset(str(photos), dataset, taxonomy=taxonomy, progress=False)
    _say(f"      dataset: {report.train} training photos, {len(taxonomy.labels)} labels")
    model_dir = workdir / "model"
    command = [
        sys.executable,
        "-m",
        "training_job.train",
        "--config",
        str(TRAIN_CONFIG),
        "--model_name_or_path",
        str(base),
        "--dataset_name",
        str(dataset),
        "--output_dir",
        str(workdir / "checkpoints"),
        "--final_model_dir",
        str(model_dir),
        "--image_token_profile",
        "compact",
        "--num_train_epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--per_device_train_batch_size",
        str(batch_size),
        "--learning_rate",
        str(learning_rate),
        *CPU_TRAINING_ARGS,
    ]
    log.write("$ " + " ".join(command) + "\n")
    log.flush()
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            log.write(line)
            progress = _training_progress(line)
            if progress:
                _say(progress)
    finally:
        if process.poll() is None and sys.exc_info()[0] is not None:
            process.kill()  # interrupted (Ctrl-C): never leave a training process behind
    if process.wait() != 0:
        log.flush()
        raise RuntimeError(f"training failed with exit code {process.returncode}; see {log.name}")
    return model_dir


def _training_progress(line: str) -> str | None:
    """The trainer's per-step log dict ({'loss': '0.41', 'epoch': '2.5', ...}) as one short progress line."""
    if not line.startswith("{'loss'"):
        return None
    try:
        values = ast.literal_eval(line.strip())
        return (
            f"      epoch {float(values['epoch']):5.2f}  loss {float(values['loss']):.3f}  "
            f"answer-token accuracy {float(values['mean_token_accuracy']):.2f}"
        )
    except (ValueError, SyntaxError, KeyError, TypeError):
        return None


# -- AWS emulation ------------------------------------------------------------------------------------------------


@dataclass
class LocalAws:
    """moto's server with the stack's bucket, queue (+ DLQ), table and notification; a context manager."""

    bucket: str
    table: str
    queue_name: str
    upload_prefix: str
    max_receive_count: int
    endpoint_url: str = ""
    queue_url: str = ""
    dead_letter_queue_url: str = ""
    queue_arn: str = ""
    s3: Any = None
    sqs: Any = None
    dynamodb: Any = None
    _server: Any = None

    def __enter__(self) -> LocalAws:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per AWS call otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        try:
            host, port = self._server.get_host_and_port()
            self.endpoint_url = f"http://{host}:{port}"
            self._create()
        except BaseException:
            self._server.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            # moto keeps its backends per process, not per server: forget this emulation's bucket, queues and table
            # so a second run in the same process (the tests run both endpoint modes) starts from nothing.
            urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"))
            self._server.stop()
            self._server = None

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="demo",
            aws_secret_access_key="demo",
        )

    def _create(self) -> None:
        self.s3, self.sqs, self.dynamodb = self.client("s3"), self.client("sqs"), self.client("dynamodb")
        self.s3.create_bucket(Bucket=self.bucket)
        # Versioned like the stack's bucket: notifications then carry a versionId, as in production.
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        dlq = self.sqs.create_queue(QueueName=f"{self.queue_name}-dlq")["QueueUrl"]
        dlq_arn = self._queue_arn(dlq)
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.max_receive_count)}
        self.queue_url = self.sqs.create_queue(
            QueueName=self.queue_name,
            Attributes={
                "VisibilityTimeout": str(DEMO_VISIBILITY_TIMEOUT),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        self.dead_letter_queue_url = dlq
        self.queue_arn = self._queue_arn(self.queue_url)
        self.s3.put_bucket_notification_configuration(
            Bucket=self.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": self.queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": self.upload_prefix}]}},
                    }
                ]
            },
        )
        self._create_table()

    def _queue_arn(self, queue_url: str) -> str:
        attributes = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return attributes["Attributes"]["QueueArn"]

    def _create_table(self) -> None:
        from stacks import constants

        # stacks/storage.py: partition key image_uri; GSIs by-hotel (hotel_id, label), by-status (status,
        # classified_at), all attributes projected.
        indexes = {
            constants.GSI_BY_HOTEL: ("hotel_id", "label"),
            constants.GSI_BY_STATUS: ("status", "classified_at"),
        }
        names = {constants.TABLE_PARTITION_KEY, *(name for pair in indexes.values() for name in pair)}
        self.dynamodb.create_table(
            TableName=self.table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in sorted(names)],
            KeySchema=[{"AttributeName": constants.TABLE_PARTITION_KEY, "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": index,
                    "KeySchema": [
                        {"AttributeName": partition, "KeyType": "HASH"},
                        {"AttributeName": sort, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index, (partition, sort) in indexes.items()
            ],
        )

    def queue_depth(self, queue_url: str | None = None) -> int:
        """Visible plus in-flight messages."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def items(self) -> list[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        items = []
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True):
            items += [{k: deserializer.deserialize(v) for k, v in item.items()} for item in page["Items"]]
        return sorted(items, key=lambda item: item["image_uri"])

    def query_count(self, index: str, key: str, value: str) -> int:
        response = self.dynamodb.query(
            TableName=self.table,
            IndexName=index,
            KeyConditionExpression="#k = :v",
            ExpressionAttributeNames={"#k": key},
            ExpressionAttributeValues={":v": {"S": value}},
            Select="COUNT",
        )
        return int(response["Count"])


# -- the Lambda ---------------------------------------------------------------------------------------------------


@dataclass
class FakeContext:
    """What Powertools reads from a Lambda context."""

    function_name: str = "photo-labeler-local"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:photo-labeler-local"
    aws_request_id: str = "local"
    timeout_ms: int = 300_000  # set from upload.function_timeout_seconds by drain_queue
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.timeout_ms - int((time.monotonic() - self._started) * 1000))


def lambda_environment(
    aws: LocalAws, backend_url: str, *, taxonomy_file: Path, config: DemoConfig
) -> dict[str, str]:
    """The function's environment as stacks/upload_path.py sets it, plus the local endpoints for boto3."""
    return {
        "TABLE_NAME": aws.table,
        "ENDPOINT_NAME": ENDPOINT_NAME,
        "MODEL_ID": MODEL_ID,
        "CONFIDENCE_THRESHOLD": str(config.upload.confidence_threshold),
        "HOTEL_ID_PATTERN": config.upload.hotel_id_pattern,
        "UPLOAD_PREFIX": config.storage.upload_prefix,
        "TAXONOMY_FILE": str(taxonomy_file.resolve()),
        "POWERTOOLS_SERVICE_NAME": "photo-labeler",
        "POWERTOOLS_METRICS_NAMESPACE": config.metrics_namespace,
        # botocore reads these when a client is created: S3/DynamoDB go to moto, InvokeEndpoint to the backend.
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": backend_url,
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def lambda_handler_module(log: TextIO) -> Iterator[Any]:
    """lambda/handler.py imported as the Lambda runtime does, its log lines and EMF metrics written to `log`."""
    if str(LAMBDA_DIR) not in sys.path:
        sys.path.insert(0, str(LAMBDA_DIR))
    import handler

    handler.get_labeller.cache_clear()  # built from the environment set above, not an earlier one
    registered = handler.logger.registered_handler
    previous_stream = registered.setStream(log) if isinstance(registered, logging.StreamHandler) else None
    try:
        yield handler
    finally:
        handler.get_labeller.cache_clear()
        if previous_stream is not None:
            registered.setStream(previous_stream)


def sqs_event(messages: Sequence[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source passes to the function."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


@dataclass
class DrainStats:
    batches: int = 0
    messages: int = 0
    failed_records: int = 0  # reported in batchItemFailures: left in the queue for redelivery
    seconds: float = 0.0
    endpoint: Any = None  # mode async: tools.async_worker.WorkerStats (submissions, inferences, duplicates)


def drain_queue(
    aws: LocalAws,
    handler: Any,
    *,
    batch_size: int,
    function_timeout_seconds: int,
    log: TextIO,
    timeout: float = DRAIN_TIMEOUT,
    progress: bool = True,
) -> DrainStats:
    """Feed the queue to `handler.lambda_handler` like the SQS event source, until the queue is empty."""
    stats = DrainStats()
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        received = aws.sqs.receive_message(
            QueueUrl=aws.queue_url,
            MaxNumberOfMessages=batch_size,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            if aws.queue_depth() == 0:
                break
            continue  # in flight: a failed message reappears after the visibility timeout
        with contextlib.redirect_stdout(log):  # Powertools prints EMF metrics to stdout
            # The handler defers records a worst case no longer fits: give it the deployed function's time budget.
            context = FakeContext(timeout_ms=function_timeout_seconds * 1000)
            response = handler.lambda_handler(sqs_event(received, aws.queue_arn), context)
        failed = {failure["itemIdentifier"] for failure in response.get("batchItemFailures", [])}
        done = [m for m in received if m["MessageId"] not in failed]
        if done:
            aws.sqs.delete_message_batch(
                QueueUrl=aws.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        stats.batches += 1
        stats.messages += len(received)
        stats.failed_records += len(failed)
        if progress:
            _say(
                f"  lambda batch {stats.batches:>3}: {len(received)} message(s), {len(failed)} failed; "
                f"{aws.queue_depth()} left in the queue"
            )
    stats.seconds = time.monotonic() - started
    return stats


# -- endpoint.mode async -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AsyncParts:
    """What stacks/async_inference.py adds: the request/response bucket and the notification queue (+ DLQ)."""

    bucket: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str


def create_async_resources(aws: LocalAws, name_prefix: str, max_receive_count: int) -> AsyncParts:
    bucket = f"{name_prefix}-async"
    aws.s3.create_bucket(Bucket=bucket)
    dlq = aws.sqs.create_queue(QueueName=f"{name_prefix}-async-notifications-dlq")["QueueUrl"]
    redrive = {"deadLetterTargetArn": aws._queue_arn(dlq), "maxReceiveCount": str(max_receive_count)}
    queue = aws.sqs.create_queue(
        QueueName=f"{name_prefix}-async-notifications",
        Attributes={"VisibilityTimeout": str(DEMO_VISIBILITY_TIMEOUT), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    return AsyncParts(bucket, queue, aws._queue_arn(queue), dlq)


@contextlib.contextmanager
def async_handler_module(log: TextIO) -> Iterator[Any]:
    """lambda/async_handler.py (the label writer) imported as the Lambda runtime does, logging to `log`."""
    if str(LAMBDA_DIR) not in sys.path:
        sys.path.insert(0, str(LAMBDA_DIR))
    import async_handler

    async_handler.get_writer.cache_clear()
    registered = async_handler.logger.registered_handler
    previous_stream = registered.setStream(log) if isinstance(registered, logging.StreamHandler) else None
    try:
        yield async_handler
    finally:
        async_handler.get_writer.cache_clear()
        if previous_stream is not None:
            registered.setStream(previous_stream)


class _BatchFailureAsItems:
    """Lambda redelivers a batch whose every record failed (Powertools raises then); drain_queue expects the
    failures listed, so list them all, as the event source mapping's retry would treat them."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def lambda_handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

        try:
            return self._module.lambda_handler(event, context)
        except BatchProcessingError:
            return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}


def drain_async(
    aws: LocalAws,
    parts: AsyncParts,
    worker: Any,
    handler: Any,
    writer: Any,
    *,
    batch_size: int,
    function_timeout_seconds: int,
    log: TextIO,
    timeout: float = DRAIN_TIMEOUT,
    progress: bool = True,
) -> DrainStats:
    """Uploads -> handler (submits) -> worker (answers) -> notifications -> label writer, until all are idle."""
    import dataclasses

    notifications = dataclasses.replace(aws, queue_url=parts.queue_url, queue_arn=parts.queue_arn)
    total = DrainStats()
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        left = timeout - (time.monotonic() - started)
        steps = ((aws, _BatchFailureAsItems(handler)), (None, None), (notifications, _BatchFailureAsItems(writer)))
        for view, function in steps:
            if view is None:  # the endpoint's turn: answer everything submitted so far
                worker.wait_idle(timeout=left)
                continue
            step = drain_queue(
                view,
                function,
                batch_size=batch_size,
                function_timeout_seconds=function_timeout_seconds,
                log=log,
                timeout=left,
                progress=progress,
            )
            total.batches += step.batches
            total.messages += step.messages
            total.failed_records += step.failed_records
        # A failed inference resubmitted by the writer makes the worker busy again: go round once more.
        if worker.wait_idle(timeout=0.2) and aws.queue_depth() == 0 and notifications.queue_depth() == 0:
            break
    total.seconds = time.monotonic() - started
    return total


def label_async(
    aws: LocalAws,
    backend_url: str,
    environment: Mapping[str, str],
    *,
    config: DemoConfig,
    log: TextIO,
    progress: bool = True,
    concurrency: int = 4,
) -> DrainStats:
    """Step 5 in endpoint.mode async; `backend_url` is the model server (it serves POST /invocations)."""
    from tools.async_worker import LocalAsyncEndpoint

    parts = create_async_resources(aws, config.name_prefix, config.upload.max_receive_count)
    with LocalAsyncEndpoint(
        s3=aws.s3,
        sqs=aws.sqs,
        queue_url=parts.queue_url,
        endpoint_name=ENDPOINT_NAME,
        bucket=parts.bucket,
        model_url=backend_url,
        max_concurrent_invocations=concurrency,
    ) as worker:
        _say(f"      async mode: {worker.url} plays SageMaker (requests and responses in s3://{parts.bucket}/)")
        async_environment = {
            **environment,
            "ENDPOINT_MODE": "async",
            "ASYNC_REQUEST_BUCKET": parts.bucket,
            "ASYNC_REQUEST_PREFIX": "requests/",
            # boto3's InvokeEndpointAsync goes to the worker; S3/SQS/DynamoDB stay on the AWS emulation.
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": worker.url,
        }
        with (
            patched_environ(async_environment),
            lambda_handler_module(log) as handler,
            async_handler_module(log) as writer,
        ):
            drain = drain_async(
                aws,
                parts,
                worker,
                handler,
                writer,
                batch_size=config.upload.batch_size,
                function_timeout_seconds=config.upload.function_timeout_seconds,
                log=log,
                progress=progress,
            )
        stats = drain.endpoint = worker.stats
        _say(
            f"      async endpoint: {stats.submissions} submissions, {stats.inferences} inferences, "
            f"{stats.duplicate_submissions} duplicate submissions, {stats.failed} failed; "
            f"{aws.queue_depth(parts.dead_letter_queue_url)} notifications dead-lettered"
        )
    return drain


# -- results ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    uri: str
    status: str
    label: str | None
    confidence: float | None
    expected: str | None  # None: a bad file
    reason: str | None

    @property
    def correct(self) -> bool | None:
        return None if self.expected is None else self.label == self.expected


def result_rows(items: Sequence[Mapping[str, Any]], uploads: Sequence[Upload], bucket: str) -> list[Row]:
    """One row per upload (status MISSING-FROM-TABLE when the pipeline lost it)."""
    by_uri = {item["image_uri"]: item for item in items}
    rows = []
    for upload in uploads:
        uri = f"s3://{bucket}/{upload.key}"
        item = by_uri.get(uri, {})
        confidence = item.get("confidence")
        rows.append(
            Row(
                uri=uri,
                status=item.get("status", "NOT-IN-TABLE"),
                label=item.get("label"),
                confidence=float(confidence) if confidence is not None else None,
                expected=upload.expected_label,
                reason=item.get("reason"),
            )
        )
    return rows


def accuracy(rows: Sequence[Row]) -> tuple[int, int]:
    """(correct, total) over the good photos."""
    judged = [row for row in rows if row.expected is not None]
    return sum(bool(row.correct) for row in judged), len(judged)


def format_table(rows: Sequence[Row]) -> str:
    header = ("image", "status", "label", "confidence", "expected", "ok / reason")
    lines = []
    for row in rows:
        verdict = (row.reason or "") if row.expected is None else ("yes" if row.correct else "NO")
        confidence = f"{row.confidence:.3f}" if row.confidence is not None else "-"
        lines.append((row.uri, row.status, row.label or "-", confidence, row.expected or "(bad file)", verdict))
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header) - 1)]
    out = []
    for line in [header, *lines]:
        out.append(
            "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]
        )
    out.insert(1, "-" * min(160, len(out[0])))
    return "\n".join(out)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image_uri", "status", "label", "confidence", "expected", "reason"])
        for row in rows:
            writer.writerow([row.uri, row.status, row.label, row.confidence, row.expected, row.reason])


# -- the demo -----------------------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    rows: list[Row]
    drain: DrainStats
    queue_left: int
    dead_letters: int
    seconds: dict[str, float]


# -- the review page (--review) -----------------------------------------------------------------------------------


def _until_interrupted(url: str) -> None:
    while True:  # sleep is interrupted by Ctrl-C (KeyboardInterrupt), which stops the page
        time.sleep(3600)


def serve_review_page(
    aws: LocalAws, *, taxonomy_file: Path, wait: Callable[[str], None] = _until_interrupted
) -> None:
    """After the pipeline ran: the review page and API (review_api/local.py, LOCAL MODE, no sign-in) on the demo's
    emulated table and bucket, until `wait(url)` returns or Ctrl-C; the page's server is stopped either way.

    The page lists the photos the demo's model was unsure about (NEEDS_REVIEW); decisions are written to the
    emulated table, so they are lost with it when the demo ends.
    """
    from review_api.local import start_local_review

    waiting = aws.query_count("by-status", "status", "NEEDS_REVIEW")
    with start_local_review(
        table=aws.table,
        bucket=aws.bucket,
        endpoint_url=aws.endpoint_url,
        region=REGION,
        upload_prefix=aws.upload_prefix,
        taxonomy_file=taxonomy_file,
    ) as server:
        _say(f"[review] {waiting} photo(s) wait for a reviewer: open {server.url} (LOCAL MODE); Ctrl-C stops it")
        try:
            wait(server.url)
        except KeyboardInterrupt:
            _say("[review] stopped")


def _say(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class DemoConfig:
    """The part of the CDK app's configuration (cdk.json) that the upload path uses."""

    name_prefix: str
    metrics_namespace: str
    taxonomy_file: str
    storage: Any  # stacks.config.StorageConfig: upload_prefix
    upload: Any  # stacks.config.UploadPathConfig: hotel_id_pattern, confidence_threshold, batch_size, ...


def load_app_config() -> DemoConfig:
    """cdk.json's `storage` and `upload` sections, validated by the CDK app's own config classes.

    Only these sections are read: other sections register their schema when their construct module is imported,
    and importing the CDK constructs would start jsii for nothing.
    """
    from stacks.config import StorageConfig, UploadPathConfig

    context = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]["photo_labeler"]
    return DemoConfig(
        name_prefix=context.get("name_prefix", "photo-labeler"),
        metrics_namespace=context.get("metrics_namespace", "HotelPhotoLabeler"),
        taxonomy_file=context.get("taxonomy_file", "classification/taxonomy.json"),
        storage=StorageConfig(**context.get("storage", {})),
        upload=UploadPathConfig(**context.get("upload", {})),
    )


@dataclass(frozen=True)
class ServedModel:
    """An engine already serving a trained model (e.g. the test session's), in place of steps 1-2."""

    model_dir: Path
    base_url: str  # answers SageMaker Runtime's /endpoints/<ENDPOINT_NAME>/invocations
    colours: Mapping[str, tuple[int, int, int]]  # label -> the colour of the photos it was trained on


def run_demo(
    workdir: Path,
    *,
    taxonomy: Taxonomy,
    train_per_label: int,
    upload_per_label: int,
    epochs: int,
    seed: int = 0,
    progress: bool = True,
    review: bool = False,
    mode: str = "realtime",
    served: ServedModel | None = None,
) -> DemoResult:
    """Steps 1-5 of the module docstring inside `workdir`; servers are stopped before it returns.

    With `served`, steps 1-2 use that engine and its model instead of training and starting new ones.
    mode "async" runs step 5 through the async endpoint path instead (`label_async`).
    """
    from model_code.vllm_server import VllmServer

    config = load_app_config()
    seconds: dict[str, float] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    taxonomy_file = workdir / "taxonomy.json"
    taxonomy_file.write_text(json.dumps({"labels": list(taxonomy.labels)}, indent=2) + "\n", encoding="utf-8")

    seconds["train"] = 0.0
    if served is None:
        with (workdir / "train.log").open("w", encoding="utf-8") as train_log:
            _say(
                f"[1/5] training a tiny LLaVA-NeXT on {len(taxonomy.labels)} labels x {train_per_label} photos ..."
            )
            began = time.monotonic()
            model_dir = train_model(
                workdir, taxonomy, per_label=train_per_label, epochs=epochs, seed=seed, log=train_log
            )
            seconds["train"] = time.monotonic() - began
        _say("[2/5] starting the serving engine (vLLM, CPU) and the AWS emulation ...")
        engine: Any = VllmServer(
            model_dir, endpoint_name=ENDPOINT_NAME, log_file=workdir / "vllm.log", progress=_say
        )
    else:
        model_dir = served.model_dir
        _say(f"[1/5] using the trained model {model_dir}")
        _say(f"[2/5] using the running engine {served.base_url}; starting the AWS emulation ...")
        engine = contextlib.nullcontext(served)
    with (
        engine as backend,
        LocalAws(
            bucket=f"{config.name_prefix}-images",
            table=f"{config.name_prefix}-labels",
            queue_name=f"{config.name_prefix}-uploads",
            upload_prefix=config.storage.upload_prefix,
            max_receive_count=config.upload.max_receive_count,
        ) as aws,
        (workdir / "lambda.log").open("w", encoding="utf-8") as lambda_log,
    ):
        _say(f"      engine {backend.base_url} (model {model_dir.name}), AWS emulation {aws.endpoint_url}")
        _say(
            f"      bucket {aws.bucket} (notifications on {aws.upload_prefix}*), queue {aws.queue_name} "
            f"(+ DLQ after {aws.max_receive_count} receives), table {aws.table} (GSIs by-hotel, by-status)"
        )

        colours = served.colours if served is not None else None
        uploads = make_uploads(
            taxonomy, upload_per_label, np.random.default_rng(seed + 1), aws.upload_prefix, colours
        )
        bad = sum(upload.expected_label is None for upload in uploads)
        _say(f"[3/5] uploading {len(uploads) - bad} new photos and {bad} bad files ...")
        for upload in uploads:
            aws.s3.put_object(Bucket=aws.bucket, Key=upload.key, Body=upload.body)
        _say(f"      {aws.queue_depth()} notifications queued (one is S3's s3:TestEvent)")

        batch_size = config.upload.batch_size
        _say(f"[4/5] running lambda/handler.py lambda_handler on the queue (batch size {batch_size}) ...")
        environment = lambda_environment(
            aws,
            backend.base_url,
            taxonomy_file=taxonomy_file,
            config=config,
        )
        if mode == "async":
            drain = label_async(
                aws, backend.base_url, environment, config=config, log=lambda_log, progress=progress
            )
        else:
            with patched_environ(environment), lambda_handler_module(lambda_log) as handler:
                drain = drain_queue(
                    aws,
                    handler,
                    batch_size=config.upload.batch_size,
                    function_timeout_seconds=config.upload.function_timeout_seconds,
                    log=lambda_log,
                    progress=progress,
                )
        seconds["label"] = drain.seconds

        rows = result_rows(aws.items(), uploads, aws.bucket)
        queue_left = aws.queue_depth()
        dead_letters = aws.queue_depth(aws.dead_letter_queue_url)
        _say("[5/5] results")
        _say(format_table(rows))
        statuses = Counter(row.status for row in rows)
        _say("      " + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())))
        _say(
            f"      GSI by-status: {aws.query_count('by-status', 'status', 'REJECTED')} REJECTED, "
            f"{aws.query_count('by-status', 'status', 'NEEDS_REVIEW')} NEEDS_REVIEW; GSI by-hotel: "
            f"{aws.query_count('by-hotel', 'hotel_id', HOTELS[0])} photos of {HOTELS[0]}"
        )
        if review:
            serve_review_page(aws, taxonomy_file=taxonomy_file)
    correct, total = accuracy(rows)
    per_photo = drain.seconds / max(1, drain.messages)
    _say(
        f"accuracy {correct}/{total} = {correct / max(1, total):.1%} on new photos; "
        f"queue left {queue_left}, dead letters {dead_letters}; "
        f"training {seconds['train']:.0f} s, labelling {drain.seconds:.1f} s for {drain.messages} messages "
        f"({per_photo:.2f} s each, {drain.failed_records} retried)"
    )
    write_csv(rows, workdir / "labels.csv")
    return DemoResult(rows, drain, queue_left, dead_letters, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.demo",
        description="Offline end-to-end demo: train a tiny model, serve it locally, emulate S3/SQS/DynamoDB, "
        "run the real Lambda handler, print the labels table.",
    )
    parser.add_argument(
        "--labels",
        type=int,
        default=DEFAULT_LABELS,
        help=f"use the first N taxonomy labels (default {DEFAULT_LABELS}; all 26 need ~3x the training time)",
    )
    parser.add_argument(
        "--train-per-label", type=int, default=10, help="generated photos per label for the dataset (default 10)"
    )
    parser.add_argument("--upload-per-label", type=int, default=3, help="uploaded photos per label (default 3)")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="photo and training seed (default 0)")
    parser.add_argument(
        "--mode",
        choices=("realtime", "async"),
        default="realtime",
        help="endpoint.mode to run: async goes through tools/async_worker.py playing SageMaker (default realtime)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="keep model, dataset, labels.csv and logs here (default: none)",
    )
    parser.add_argument(
        "--review",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="then serve the review page on the emulated table and bucket until Ctrl-C (local mode, no sign-in); "
        "default: on in a terminal, off otherwise (CI, pipes), so `make demo` ends on the page for a person only",
    )
    args = parser.parse_args(argv)
    if args.train_per_label < 1 or args.upload_per_label < 1 or args.epochs < 1:
        parser.error("--train-per-label, --upload-per-label and --epochs must be >= 1")
    taxonomy = Taxonomy.load(REPO_ROOT / load_app_config().taxonomy_file)
    if not 2 <= args.labels <= len(taxonomy.labels):
        parser.error(f"--labels must be within 2..{len(taxonomy.labels)}")
    taxonomy = Taxonomy(taxonomy.labels[: args.labels])
    if len(taxonomy.labels) > len(PALETTE):
        parser.error(f"the demo's photo palette distinguishes at most {len(PALETTE)} labels")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # library progress bars; the demo prints its own progress
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

    began = time.monotonic()
    if args.output_dir is not None:
        if args.output_dir.exists() and any(args.output_dir.iterdir()):
            parser.error(f"--output-dir {args.output_dir} is not empty")
        workdir, cleanup = args.output_dir, None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="photo-labeler-demo-")
        workdir = Path(cleanup.name)
    try:
        result = run_demo(
            workdir,
            taxonomy=taxonomy,
            train_per_label=args.train_per_label,
            upload_per_label=args.upload_per_label,
            epochs=args.epochs,
            seed=args.seed,
            review=sys.stdin.isatty() if args.review is None else args.review,
            mode=args.mode,
        )
    except Exception as error:
        print(f"demo failed: {type(error).__name__}: {error}", file=sys.stderr)
        if cleanup is not None:
            print("(re-run with --output-dir DIR to keep train.log and lambda.log)", file=sys.stderr)
        return 1
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    _say(
        f"done in {time.monotonic() - began:.0f} s" + (f"; kept {workdir}" if cleanup is None else "; cleaned up")
    )
    lost = [row for row in result.rows if row.status == "NOT-IN-TABLE"]
    return 1 if lost or result.queue_left else 0


if __name__ == "__main__":
    sys.exit(main())
