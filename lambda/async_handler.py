"""Powertools adapter of the async label writer: SQS batches of SageMaker async inference notifications.

SageMaker publishes each finished (or failed) inference to the Success or Error SNS topic of the endpoint's
AsyncInferenceConfig; both deliver to one SQS queue (raw message delivery) whose DLQ keeps what failed after every
retry. All decisions live in async_core.LabelWriter; this module parses, wires and reports (docs/interfaces.md).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from async_aws import build_label_writer
from async_core import Completion, InferenceFailed, LabelWriter
from async_messages import parse_notification
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from labeller_core import Status, TransientFault

from classification.labeller_environment import LabellerEnvironment

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)

_STATUS_METRICS = {
    Status.LABELED: "PhotosLabeled",
    Status.NEEDS_REVIEW: "PhotosNeedsReview",
    Status.PENDING: "AsyncInferencesResubmitted",
    Status.SKIPPED: "PhotosSkipped",
}


@cache
def get_writer() -> LabelWriter:
    """Built on first use (not at import) so tests and the cold start read the final environment, parsed here once
    (a missing or malformed variable raises ConfigError naming it)."""
    return build_label_writer(boto3.session.Session(), LabellerEnvironment.from_process())


def _emit(completion: Completion) -> None:
    outcome = completion.outcome
    metrics.add_metric(name=_STATUS_METRICS[outcome.status], unit=MetricUnit.Count, value=1)
    if completion.queue_ms is not None and outcome.status in (Status.LABELED, Status.NEEDS_REVIEW):
        # Queueing plus inference, as SageMaker timed it: the async counterpart of EndpointLatency.
        metrics.add_metric(name="AsyncInferenceLatency", unit=MetricUnit.Milliseconds, value=completion.queue_ms)
    if outcome.label is not None and outcome.status in (Status.LABELED, Status.NEEDS_REVIEW):
        with single_metric(
            name="PhotosByLabel",
            unit=MetricUnit.Count,
            value=1,
            default_dimensions={"service": metrics.service or "photo-labeler"},
        ) as metric:
            metric.add_dimension(name="label", value=outcome.label)
    logger.info(
        "async answer processed",
        extra={
            "status": outcome.status.value,
            "label": outcome.label,
            "confidence": outcome.confidence,
            "reason": outcome.reason,
            "inference_id": completion.inference_id,
            "queue_ms": completion.queue_ms,
            "model": outcome.model,
        },
    )


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    """One message = one notification; raising fails only this message (retried, then the DLQ)."""
    notification = parse_notification(record.body)  # ValueError: a poison message, left to reach the DLQ
    logger.append_keys(inference_id=notification.inference_id)
    try:
        completion = get_writer().handle(notification)
    except InferenceFailed as error:
        metrics.add_metric(name="AsyncInferencesFailed", unit=MetricUnit.Count, value=1)
        logger.error("async inference failed on every attempt: dead-lettering", extra={"error": str(error)})
        raise
    except TransientFault as error:
        metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=1)
        logger.warning("transient failure, will be retried", extra={"error": str(error)})
        raise
    except Exception:
        metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=1)
        logger.exception("unexpected failure, will be retried")
        raise
    finally:
        logger.remove_keys(["inference_id"])
    _emit(completion)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
