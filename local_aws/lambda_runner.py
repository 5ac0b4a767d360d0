"""The Lambda runtime played in this process: the functions' environment, a context object, the SQS event source.

lambda/handler.py and lambda/async_handler.py run unmodified; their boto3 clients reach the emulation (LocalAws)
and the model server through `AWS_ENDPOINT_URL*` variables, which botocore reads when a client is created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from classification.labeller_environment import AsyncEnvironment, LabellerEnvironment
from local_aws.emulation import CREDENTIALS, REGION, AsyncParts, LocalAws
from stacks.common.constants import POWERTOOLS_SERVICE_NAME

if TYPE_CHECKING:
    from stacks.config import AppConfig

LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda"
ENDPOINT_NAME = "photo-labeler-local"  # the one name model_code's SageMaker Runtime route answers to locally
MODEL_ID = "tiny-llava-next-demo"
DRAIN_TIMEOUT = 600  # seconds: give up (and say what is left) rather than hang
# The module-level caches of each function's clients, built from the environment on first use.
_CLIENT_CACHES = {"handler": "get_labeller", "async_handler": "get_writer", "window_handler": "get_window"}


@dataclass
class LambdaContext:
    """What Powertools reads from a Lambda context; the remaining time counts down from creation."""

    function_name: str = "photo-labeler-local"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:photo-labeler-local"
    aws_request_id: str = "local"
    timeout_ms: int = 300_000
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.timeout_ms - int((time.monotonic() - self._started) * 1000))


def lambda_environment(
    aws: LocalAws,
    *,
    sagemaker_runtime_url: str,
    taxonomy_file: Path,
    config: AppConfig,
    async_parts: AsyncParts | None = None,
    model_id: str = MODEL_ID,
    scheduled: bool = False,
) -> dict[str, str]:
    """The labeller's environment as the stack sets it, plus the local endpoints for boto3.

    `sagemaker_runtime_url` answers InvokeEndpoint (realtime: the model server) or InvokeEndpointAsync (async: the
    worker playing SageMaker); `async_parts` switches the function to endpoint.mode async, `scheduled` to
    endpoint.mode scheduled (no endpoint: the URL is then unused); `model_id` is the served model's id (an `s3://`
    prefix holding its model_profile.json selects its profile, as in the cloud).
    """
    # The stack's contract (classification/labeller_environment.py), with the taxonomy as a local path.
    labeller = LabellerEnvironment(
        table_name=aws.table,
        endpoint_name="" if scheduled else ENDPOINT_NAME,
        model_id=model_id,
        confidence_threshold=config.upload.confidence_threshold,
        base_margin_threshold=config.upload.base_margin_threshold,
        taxonomy_file=str(taxonomy_file.resolve()),
        hotel_id_pattern=config.upload.hotel_id_pattern,
        upload_prefix=config.storage.upload_prefix,
        service_name=POWERTOOLS_SERVICE_NAME,
        metrics_namespace=config.metrics_namespace,
        async_inference=AsyncEnvironment(request_bucket=async_parts.bucket) if async_parts is not None else None,
        scheduled=scheduled,
    )
    environment = {
        **labeller.to_environment(),
        # S3/SQS/DynamoDB go to moto, SageMaker Runtime to the model server or the async worker.
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": sagemaker_runtime_url,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return environment


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
def lambda_module(name: str, log: TextIO) -> Iterator[Any]:
    """lambda/<name>.py ("handler" or "async_handler") imported as the Lambda runtime does (the bundle puts
    lambda/*.py at the task root), its clients built from the current environment, its log lines and EMF metrics
    written to `log`."""
    if str(LAMBDA_DIR) not in sys.path:
        sys.path.insert(0, str(LAMBDA_DIR))
    module = importlib.import_module(name)
    cache = getattr(module, _CLIENT_CACHES[name])
    cache.cache_clear()  # built from the environment set now, not an earlier one
    registered = module.logger.registered_handler
    previous_stream = registered.setStream(log) if isinstance(registered, logging.StreamHandler) else None
    try:
        yield module
    finally:
        cache.cache_clear()
        if previous_stream is not None:
            registered.setStream(previous_stream)


def sqs_event(messages: Sequence[Mapping[str, Any]], *, queue_arn: str, region: str = REGION) -> dict[str, Any]:
    """The event Lambda's SQS event source passes to the function for these ReceiveMessage messages."""
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
                "awsRegion": region,
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
    window: Any = None  # mode scheduled: the window's report (lambda/window_files.total: counts per status)


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
            context = LambdaContext(timeout_ms=function_timeout_seconds * 1000)
            response = handler.lambda_handler(sqs_event(received, queue_arn=aws.queue_arn), context)
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
            print(
                f"  lambda batch {stats.batches:>3}: {len(received)} message(s), {len(failed)} failed; "
                f"{aws.queue_depth()} left in the queue",
                flush=True,
            )
    stats.seconds = time.monotonic() - started
    return stats


def label_realtime(
    aws: LocalAws,
    model_url: str,
    *,
    taxonomy_file: Path,
    config: AppConfig,
    log: TextIO,
    progress: bool = True,
    model_id: str = MODEL_ID,
) -> DrainStats:
    """lambda/handler.py on the upload queue until it is empty; `model_url` answers SageMaker Runtime's route."""
    environment = lambda_environment(
        aws, sagemaker_runtime_url=model_url, taxonomy_file=taxonomy_file, config=config, model_id=model_id
    )
    return drain_uploads(aws, environment, config=config, log=log, progress=progress)


def drain_uploads(
    aws: LocalAws, environment: Mapping[str, str], *, config: AppConfig, log: TextIO, progress: bool = True
) -> DrainStats:
    """lambda/handler.py in `environment` (lambda_environment) on the upload queue until it is empty, in the
    stack's batches and timeout."""
    with patched_environ(environment), lambda_module("handler", log) as handler:
        return drain_queue(
            aws,
            handler,
            batch_size=config.upload.batch_size,
            function_timeout_seconds=config.upload.function_timeout_seconds,
            log=log,
            progress=progress,
        )


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
    model_url: str,
    *,
    taxonomy_file: Path,
    config: AppConfig,
    log: TextIO,
    progress: bool = True,
    concurrency: int = 4,
) -> DrainStats:
    """The upload queue in endpoint.mode async: the same handler submits each photo (request in S3,
    InvokeEndpointAsync), tools/async_worker.py plays SageMaker (`model_url`'s POST /invocations, response in S3,
    notification to a second queue), and lambda/async_handler.py writes the labels from the notifications.
    `drain.endpoint` holds the worker's counts."""
    from tools.async_worker import LocalAsyncEndpoint

    parts = aws.add_async_parts(config.name_prefix, config.upload.max_receive_count)
    with LocalAsyncEndpoint(
        s3=aws.s3,
        sqs=aws.sqs,
        queue_url=parts.queue_url,
        endpoint_name=ENDPOINT_NAME,
        bucket=parts.bucket,
        model_url=model_url,
        max_concurrent_invocations=concurrency,
    ) as worker:
        print(
            f"      async mode: {worker.url} plays SageMaker (requests and responses in s3://{parts.bucket}/)",
            flush=True,
        )
        environment = lambda_environment(
            aws, sagemaker_runtime_url=worker.url, taxonomy_file=taxonomy_file, config=config, async_parts=parts
        )
        with (
            patched_environ(environment),
            lambda_module("handler", log) as handler,
            lambda_module("async_handler", log) as writer,
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
        print(
            f"      async endpoint: {stats.submissions} submissions, {stats.inferences} inferences, "
            f"{stats.duplicate_submissions} duplicate submissions, {stats.failed} failed; "
            f"{aws.queue_depth(parts.dead_letter_queue_url)} notifications dead-lettered",
            flush=True,
        )
    return drain


__all__ = [
    "DRAIN_TIMEOUT",
    "ENDPOINT_NAME",
    "LAMBDA_DIR",
    "MODEL_ID",
    "DrainStats",
    "LambdaContext",
    "drain_async",
    "drain_queue",
    "drain_uploads",
    "label_async",
    "label_realtime",
    "lambda_environment",
    "lambda_module",
    "patched_environ",
    "sqs_event",
]
