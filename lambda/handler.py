"""Powertools adapter of the labeller: SQS batches of S3 notifications, and Step Functions backfill batches.

All decisions live in labeller_core (async_core, scheduled_core for the other endpoint modes); this module parses
events, wires the boto3-backed data access, and turns outcomes into logs (image URI on every line) and EMF metrics
(names in docs/interfaces.md).
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from labeller_aws import (
    ENDPOINT_CLIENT_CONFIG,
    SSM_CLIENT_CONFIG,
    DynamoLabelStore,
    S3ModelProfiles,
    S3ObjectStore,
    SageMakerEndpoint,
    SsmModelRegistry,
)
from labeller_core import (
    BACKFILL_TIME_MARGIN_MS,
    Labeller,
    LabellerConfig,
    Outcome,
    Status,
    TransientFault,
)
from labeller_inputs import BackfillBatch, ObjectRef, parse_s3_notification

from classification.labeller_environment import ASYNC, SCHEDULED, LabellerEnvironment

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)

_STATUS_METRICS = {
    Status.LABELED: "PhotosLabeled",
    Status.NEEDS_REVIEW: "PhotosNeedsReview",
    Status.REJECTED: "PhotosRejected",
    Status.MISSING: "PhotosSkipped",  # consumed without a label, like the skips; the status is in the table
    Status.SKIPPED: "PhotosSkipped",
}
# PENDING by endpoint mode: async submitted it (the label arrives through async_handler), scheduled recorded it
# for the next window (the label arrives from the window's job).
_PENDING_METRICS = {ASYNC: "PhotosSubmitted", SCHEDULED: "PhotosPending"}


# One record's worst case (two endpoint attempts of 65 s plus S3/DynamoDB): a record is started only while it still
# fits in the invocation. stacks/common/constants.LABELLER_RECORD_WORST_CASE_SECONDS is the same figure at synth.
RECORD_WORST_CASE_MS = BACKFILL_TIME_MARGIN_MS


class RecordDeferred(Exception):
    """Too little time left for a worst-case record: reported as a batch item failure, SQS delivers it again."""


class TransientBatchError(Exception):
    """Some backfill items hit a transient fault (or were not reached): the map's Retry re-runs the batch."""


@cache
def get_labeller(*, backfill: bool = False) -> Labeller:
    """Built on first use (not at import) so tests and the cold start read the final environment.

    `backfill` matters in scheduled mode only: the backfill records PENDING from HeadObject, without a download.
    """
    # The one read of the function's environment: a missing or malformed variable raises ConfigError naming it.
    return build_labeller(LabellerEnvironment.from_process(), boto3.session.Session(), backfill=backfill)


def build_labeller(environment: LabellerEnvironment, session: Any, *, backfill: bool = False) -> Labeller:
    """The labeller of `environment`'s endpoint mode, on `session`'s clients."""
    config = LabellerConfig.from_environment(environment)
    registry = None
    if config.model_parameter_name:
        # The registry names the approved model; MODEL_ID is only the fallback until one is registered.
        registry = SsmModelRegistry(
            session.client("ssm", config=SSM_CLIENT_CONFIG),
            config.model_parameter_name,
            fallback=config.model_id,
            warn=logger.warning,
        )
    # The request and the routing rule follow the profile recorded beside the served model's weights.
    profiles = S3ModelProfiles(session.client("s3"))
    if environment.endpoint_mode == ASYNC:
        # Same rules up to the endpoint call, which becomes a submission (lambda/async_core.py).
        from async_aws import build_submitter

        return build_submitter(config, session, environment, model_id=registry, profiles=profiles)
    if environment.endpoint_mode == SCHEDULED:
        # Same rules up to the endpoint call, which becomes a PENDING record (lambda/scheduled_core.py).
        from scheduled_core import PendingRecorder

        return PendingRecorder(
            config,
            objects=S3ObjectStore(session.client("s3")),
            labels=DynamoLabelStore(session.client("dynamodb"), environment.table_name),
            validate=not backfill,
            model_id=registry,
        )
    return Labeller(
        config,
        objects=S3ObjectStore(session.client("s3")),
        endpoint=SageMakerEndpoint(
            session.client("sagemaker-runtime", config=ENDPOINT_CLIENT_CONFIG), environment.endpoint_name
        ),
        labels=DynamoLabelStore(session.client("dynamodb"), environment.table_name),
        model_id=registry,
        profiles=profiles,
    )


def label_one(ref: ObjectRef, *, reclassify: bool = False, backfill: bool = False) -> Outcome:
    """Process one object with its URI on every log line; re-raises what must be retried."""
    logger.append_keys(image_uri=ref.image_uri)
    try:
        try:
            labeller = get_labeller(backfill=backfill)
            outcome = labeller.process(ref, reclassify=reclassify)
        except TransientFault as error:
            metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=1)
            logger.warning("transient failure, will be retried", extra={"error": str(error)})
            raise
        except Exception:
            metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=1)
            logger.exception("unexpected failure, will be retried")
            raise
        _emit(outcome, labeller.endpoint_mode)
        return outcome
    finally:
        logger.remove_keys(["image_uri"])


def _emit(outcome: Outcome, endpoint_mode: str) -> None:
    pending = outcome.status is Status.PENDING
    name = _PENDING_METRICS[endpoint_mode] if pending else _STATUS_METRICS[outcome.status]
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if outcome.endpoint_ms is not None:
        metrics.add_metric(name="EndpointLatency", unit=MetricUnit.Milliseconds, value=outcome.endpoint_ms)
    if outcome.label is not None and outcome.status in (Status.LABELED, Status.NEEDS_REVIEW):
        # Its own EMF blob: a `label` dimension on the shared metrics object would split every other metric.
        with single_metric(
            name="PhotosByLabel",
            unit=MetricUnit.Count,
            value=1,
            default_dimensions={"service": metrics.service or "photo-labeler"},
        ) as metric:
            metric.add_dimension(name="label", value=outcome.label)
    logger.info(
        "photo processed",
        extra={
            "status": outcome.status.value,
            "label": outcome.label,
            "confidence": outcome.confidence,
            "reason": outcome.reason,
            "endpoint_ms": outcome.endpoint_ms,
            "model": outcome.model,
        },
    )


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    """One SQS message = one S3 notification (usually one object); raising fails only this message."""
    # A timed-out invocation fails every message of the batch, labelled or not; a deferred one spends one receive.
    remaining_ms = lambda_context.get_remaining_time_in_millis()
    if remaining_ms < RECORD_WORST_CASE_MS:
        logger.info(
            "deferred to a later delivery", extra={"message_id": record.message_id, "remaining_ms": remaining_ms}
        )
        raise RecordDeferred(f"{remaining_ms} ms left, a record may need {RECORD_WORST_CASE_MS} ms")
    refs = parse_s3_notification(record.body)
    if not refs:
        logger.info("no ObjectCreated record (s3:TestEvent or another event type): consumed")
        metrics.add_metric(name="PhotosSkipped", unit=MetricUnit.Count, value=1)
        return
    for ref in refs:
        label_one(ref)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


def _records_pending() -> bool:
    """Whether the backfill's labeller records PENDING (async, scheduled mode): its summary then counts them."""
    try:
        return get_labeller(backfill=True).endpoint_mode in _PENDING_METRICS
    except Exception:  # no labeller (a bad environment): every item of the batch failed on it, counted transient
        return False


@metrics.log_metrics
@logger.inject_lambda_context
def backfill_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """Label a Distributed Map batch; counts per status, or TransientBatchError after the whole batch."""
    batch = BackfillBatch.parse(event)
    for reason in batch.invalid:
        logger.error("backfill item refused", extra={"reason": reason})
    counts: Counter[str] = Counter()
    for position, ref in enumerate(batch.refs):
        # Always make progress (first item), then stop while a worst-case item still fits the invocation.
        if position > 0 and context.get_remaining_time_in_millis() < BACKFILL_TIME_MARGIN_MS:
            counts["deferred"] = len(batch.refs) - position
            break
        try:
            outcome = label_one(ref, reclassify=batch.reclassify, backfill=True)
        except Exception:
            counts["transient"] += 1
            continue
        counts[outcome.status.value.lower()] += 1
    summary = {
        "items": len(batch.refs) + len(batch.invalid),
        "invalid": len(batch.invalid),
        **{
            status.value.lower(): counts[status.value.lower()] for status in Status if status is not Status.PENDING
        },
        "transient": counts["transient"],
        "deferred": counts["deferred"],
    }
    if _records_pending():
        # async: submitted, their labels arrive through async_handler; scheduled: recorded for the next window
        summary["pending"] = counts["pending"]
    logger.info("backfill batch done", extra={"summary": summary, "reclassify": batch.reclassify})
    if summary["transient"] or summary["deferred"]:
        raise TransientBatchError(
            f"{summary['transient']} item(s) hit a transient fault and {summary['deferred']} were not reached; "
            f"summary {summary}"
        )
    return summary
