"""Powertools adapter of a scheduled window's steps (window_core.py), invoked by the window state machine.

    {"action": "survey", "limit": N}                     -> {"pending", "oldest_age_seconds"}
    {"action": "plan", "window_id": ID, "settings": {}}  -> {"window_id", "photos", "hosts", "shards", ...}
    {"action": "report", "window_id": ID}                -> the hosts' counts summed

Environment: TABLE_NAME (the labels table), WORK_BUCKET (manifests and checkpoints), POWERTOOLS_SERVICE_NAME,
POWERTOOLS_METRICS_NAMESPACE. Metrics (service `photo-labeler-window`): `OldestPendingSeconds` (each survey; the
pending-age alarm watches it) and, per report, `PhotosLabeled`, `PhotosNeedsReview`, `PhotosRejected`,
`PhotosSkipped` (missing and skipped), `PhotosInferred`, `WindowPhotosFailed`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from window_aws import DynamoPendingIndex, S3WorkStore
from window_core import Window, WindowSettings

from classification.labeller_environment import WindowEnvironment

logger = Logger()
metrics = Metrics()

# Report counts -> metric names (the labellers' names where they mean the same, docs/interfaces.md).
REPORT_METRICS = {
    "labeled": "PhotosLabeled",
    "needs_review": "PhotosNeedsReview",
    "rejected": "PhotosRejected",
    "missing": "PhotosSkipped",
    "skipped": "PhotosSkipped",
    "inferred": "PhotosInferred",
    "failed": "WindowPhotosFailed",
}


@cache
def get_window() -> Window:
    """Built on first use from the function's environment, parsed here once (ConfigError names what is missing)."""
    environment = WindowEnvironment.from_process()
    session = boto3.session.Session()
    return Window(
        index=DynamoPendingIndex(session.client("dynamodb"), environment.table_name),
        store=S3WorkStore(session.client("s3"), environment.work_bucket),
    )


def _positive(event: dict[str, Any], name: str) -> int:
    value = event.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"'{name}' must be an integer >= 1, got {value!r}")
    return value


def _window_id(event: dict[str, Any]) -> str:
    value = event.get("window_id")
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError(f"'window_id' must be a non-empty name without '/', got {value!r}")
    return value


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action") if isinstance(event, dict) else None
    if action == "survey":
        survey = get_window().survey(_positive(event, "limit"))
        metrics.add_metric(name="OldestPendingSeconds", unit=MetricUnit.Seconds, value=survey.oldest_age_seconds)
        logger.info("window survey", extra={"pending": survey.pending, "oldest": survey.oldest_age_seconds})
        return {"pending": survey.pending, "oldest_age_seconds": survey.oldest_age_seconds}
    if action == "plan":
        plan = get_window().plan(_window_id(event), WindowSettings.from_event(event.get("settings")))
        logger.info("window planned", extra=plan.to_dict())
        return plan.to_dict()
    if action == "report":
        counts = get_window().report(_window_id(event))
        for name, metric in REPORT_METRICS.items():
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=counts.get(name, 0))
        logger.info("window report", extra={"counts": counts})
        return counts
    raise ValueError(f"'action' must be survey, plan or report, got {action!r}")
