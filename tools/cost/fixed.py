"""What the deployed stack costs a month whatever the traffic, per labelling mode, and Lambda's INIT billing.

The counts are the synthesized template's (tests/tools/cost/test_cost_fixed.py synthesizes each mode and holds
them equal): CloudWatch alarms (an alarm on a metric-math expression is billed per metric it reads), the two
alarms Application Auto Scaling creates for each target-tracking policy, the dashboard, customer-managed KMS
keys, the queues a Lambda event source long-polls while empty, and the custom metrics the functions publish.
Prices: tools/cost/prices.json. docs/cost-model.md, "Fixed monthly costs".
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.cost.prices import Prices
from tools.cost.settings import Settings

REAL_TIME, ASYNC, SCHEDULED = "real-time", "async", "scheduled"
HOURS_PER_MONTH = 730.0  # AWS's billing convention (8,760 / 12)
SQS_IDLE_POLLERS = 5  # Lambda's SQS event source long-polls with 5 pollers when the queue is empty
SQS_LONG_POLL_SECONDS = 20
SCALING_ALARMS_PER_POLICY = 2  # target tracking: one alarm to scale out, one to scale in (AAS creates them)

# -- Lambda INIT (billed since 2025-08-01 for ZIP functions on managed runtimes) ----------------------------------
# AWS Compute Blog, "AWS Lambda standardizes billing for INIT Phase" (2025-04-29): INITs "typically occur in under
# 1% of invocations" in production; INIT_SHARE takes that upper figure.
INIT_SHARE = 0.01
# The labeller module's import, median of 7 fresh processes (benchmarks/bench_lambda_init.py, 2026-12-06, this
# project's 2-core CI machine): 0.85 s (the async writer 0.76 s, the review API 0.66 s). Lambda's runtime
# bootstrap is not included; INIT runs with more CPU than the function's memory share, so it is not scaled.
INIT_SECONDS = 0.85

# The labeller's EMF metrics (docs/interfaces.md) per mode, without the per-label PhotosByLabel family.
_COMMON = ("PhotosLabeled", "PhotosNeedsReview", "PhotosRejected", "PhotosSkipped", "TransientFailures")
_ASYNC = ("PhotosSubmitted", "AsyncInferenceLatency", "AsyncInferencesResubmitted", "AsyncInferencesFailed")
# Scheduled mode (lambda/scheduled_core.py, window_handler.py): the upload Lambda records PENDING (PhotosPending)
# and rejects, and labels nothing, so no PhotosByLabel; the window function publishes under its own service
# dimension.
_SCHEDULED_UPLOADS = ("PhotosPending", "PhotosRejected", "PhotosSkipped", "TransientFailures")
_WINDOW = (
    "OldestPendingSeconds",
    "PhotosLabeled",
    "PhotosNeedsReview",
    "PhotosRejected",
    "PhotosSkipped",
    "PhotosInferred",
    "WindowPhotosFailed",
)
# review_api/handler.py: ReviewDecisionsByKind once per decision (confirm, correct, reject).
REVIEW_METRICS = 7


@dataclass(frozen=True)
class FixedResources:
    alarm_metrics: int  # metrics read by the template's CloudWatch alarms (standard resolution)
    target_tracking_policies: int
    high_resolution_scaling: bool  # the tracked metric is high-resolution (10-s): its alarms are too
    dashboards: int
    kms_keys: int
    polled_queues: int
    metric_names: tuple[str, ...]  # the labellers' (service photo-labeler)
    per_label: bool = True  # PhotosByLabel, one metric per label
    window_metric_names: tuple[str, ...] = ()  # scheduled mode's window function (its own service dimension)

    def custom_metrics(self, settings: Settings) -> int:
        per_label = settings.labels if self.per_label else 0
        review = REVIEW_METRICS if settings.review_enabled else 0
        return len(self.metric_names) + per_label + len(self.window_metric_names) + review


RESOURCES = {
    # DLQ, training pipeline, queue age, stall (5 metrics), backfill failed (2), rollout errors + latency, 5xx.
    REAL_TIME: FixedResources(
        alarm_metrics=13,
        target_tracking_policies=1,
        high_resolution_scaling=True,  # SageMakerVariantConcurrentRequestsPerModelHighResolution
        dashboards=1,
        kms_keys=2,
        polled_queues=1,
        metric_names=(*_COMMON, "EndpointLatency"),
    ),
    # + the async DLQ, HasBacklogWithoutCapacity (it starts an instance from zero) and the backlog age.
    ASYNC: FixedResources(
        alarm_metrics=16,
        target_tracking_policies=1,
        high_resolution_scaling=False,  # ApproximateBacklogSizePerInstance, one-minute
        dashboards=1,
        kms_keys=4,
        polled_queues=2,
        metric_names=(*_COMMON, *_ASYNC),
    ),
    # docs/scheduled-mode.md: no endpoint (no rollout or 5xx alarms, no scaling policy); the upload path's queue
    # age and stall (4 metrics: what the scheduled upload Lambda emits) stay; + the PENDING-age alarm and the
    # window's failed-or-timed-out alarm (2). Held against the template (test_cost_fixed.py).
    SCHEDULED: FixedResources(
        alarm_metrics=12,
        target_tracking_policies=0,
        high_resolution_scaling=False,
        dashboards=1,
        kms_keys=2,
        polled_queues=1,
        metric_names=_SCHEDULED_UPLOADS,
        per_label=False,
        window_metric_names=_WINDOW,
    ),
}


def fixed_parts(mode: str, settings: Settings, prices: Prices) -> list[tuple[str, float, str]]:
    """(part, USD a month, basis) of what the mode's stack costs with no photo at all."""
    resources = RESOURCES[mode]
    idle_polls = resources.polled_queues * SQS_IDLE_POLLERS * HOURS_PER_MONTH * 3600 / SQS_LONG_POLL_SECONDS
    scaling = resources.target_tracking_policies * SCALING_ALARMS_PER_POLICY
    scaling_price = prices.alarm_metric_month
    if resources.high_resolution_scaling:
        scaling_price = prices.high_resolution_alarm_metric_month
    metrics = resources.custom_metrics(settings)
    alarms = resources.alarm_metrics * prices.alarm_metric_month + scaling * scaling_price
    return [
        (
            "SQS requests",
            idle_polls * prices.sqs_per_request,
            f"{resources.polled_queues} queue(s) long-polled when empty",
        ),
        (
            "CloudWatch + X-Ray",
            metrics * prices.custom_metric_month,
            f"{metrics} custom metrics" + (f" ({settings.labels} per label)" if resources.per_label else ""),
        ),
        (
            "Alarms + dashboard",
            alarms + resources.dashboards * prices.dashboard_month,
            f"{resources.alarm_metrics + scaling} alarm metrics, {resources.dashboards} dashboard",
        ),
        ("KMS keys", resources.kms_keys * prices.kms_key_month, f"{resources.kms_keys} customer-managed keys"),
    ]


def init_gb_seconds(invocations: float, memory_mb: int) -> float:
    """Billed INIT GB-s of `invocations` at INIT_SHARE cold starts of INIT_SECONDS each."""
    return invocations * INIT_SHARE * INIT_SECONDS * memory_mb / 1024
