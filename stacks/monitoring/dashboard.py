"""The operations dashboard's rows (stacks/monitoring/alarms.py assembles them): each function returns the widgets
of one row, built from the metrics of stacks/monitoring/metrics.py. Widgets are not constructs: they add no
resource of their own, only the dashboard's body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn

from stacks.common import constants
from stacks.monitoring.metrics import (
    BACKLOG_PER_INSTANCE,
    BACKLOG_SIZE,
    HAS_BACKLOG_WITHOUT_CAPACITY,
    OLDEST_REQUEST_AGE,
    PROGRESS_METRICS,
    RATE_PERIOD,
    STATUS_METRICS,
    AsyncRef,
    MonitoringMetrics,
    async_metric,
)

DASHBOARD_WIDTH = 24  # CloudWatch dashboards are 24 columns wide


def photo_widgets(metrics: MonitoringMetrics, services: Mapping[str, str]) -> list[cloudwatch.IWidget]:
    """Photos per minute by outcome, one graph per path (uploads, backfill)."""
    widgets: list[cloudwatch.IWidget] = []
    width = DASHBOARD_WIDTH // len(services)
    for path, service in services.items():
        widgets.append(
            cloudwatch.GraphWidget(
                title=f"Photos per minute ({path})",
                left=[metrics.photo_metric(name, service, label=label) for name, label in STATUS_METRICS],
                width=width,
                height=6,
                stacked=True,
                left_y_axis=cloudwatch.YAxisProps(min=0, label="photos/min", show_units=False),
            )
        )
    return widgets


def label_widgets(
    metrics: MonitoringMetrics, services: Mapping[str, str], labels: Sequence[str]
) -> list[cloudwatch.IWidget]:
    # One metric per taxonomy label: the taxonomy is known at synth, and a fixed list keeps colours stable.
    width = DASHBOARD_WIDTH // len(services)
    return [
        cloudwatch.GraphWidget(
            title=f"Label distribution ({path}, over the time range)",
            left=[metrics.label_metric(label, service) for label in labels],
            view=cloudwatch.GraphWidgetView.PIE,
            set_period_to_time_range=True,
            width=width,
            height=8,
            legend_position=cloudwatch.LegendPosition.RIGHT,
        )
        for path, service in services.items()
    ]


def endpoint_widgets(metrics: MonitoringMetrics) -> list[cloudwatch.IWidget]:
    """Invocations and errors, latency, concurrency and instances, GPU use: one row."""
    width = DASHBOARD_WIDTH // 4
    stats = cloudwatch.Stats
    return [
        cloudwatch.GraphWidget(
            title="Endpoint invocations and errors per minute",
            left=[metrics.endpoint_metric("Invocations", stats.SUM, label="invocations")],
            right=[
                metrics.endpoint_metric("Invocation4XXErrors", stats.SUM, label="4xx"),
                metrics.endpoint_metric("Invocation5XXErrors", stats.SUM, label="5xx"),
            ],
            width=width,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Model latency (ms)",
            left=[
                # ModelLatency is in microseconds; the Lambda's EndpointLatency adds the network round trip.
                cloudwatch.MathExpression(
                    expression="lat50 / 1000",
                    using_metrics={"lat50": metrics.endpoint_metric("ModelLatency", stats.percentile(50))},
                    label="model p50",
                    period=RATE_PERIOD,
                ),
                cloudwatch.MathExpression(
                    expression="lat90 / 1000",
                    using_metrics={"lat90": metrics.endpoint_metric("ModelLatency", stats.percentile(90))},
                    label="model p90",
                    period=RATE_PERIOD,
                ),
                cloudwatch.Metric(
                    namespace=metrics.namespace,
                    metric_name="EndpointLatency",
                    dimensions_map={"service": constants.POWERTOOLS_SERVICE_NAME},
                    statistic=stats.percentile(90),
                    period=RATE_PERIOD,
                    label="labeller-observed p90",
                ),
            ],
            width=width,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Concurrency and instances",
            left=[
                metrics.endpoint_metric(
                    "ConcurrentRequestsPerModel", stats.MAXIMUM, label="concurrent requests per model (max)"
                )
            ],
            right=[
                # No instance-count metric exists: each instance reports CPUUtilization once a minute, so
                # the sample count is the number of instances in service.
                metrics.endpoint_metric(
                    "CPUUtilization",
                    stats.SAMPLE_COUNT,
                    namespace=constants.SAGEMAKER_METRICS_NAMESPACE,
                    label="instances (CPUUtilization samples/min)",
                )
            ],
            width=width,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="GPU utilisation (%)",
            left=[
                metrics.endpoint_metric(
                    "GPUUtilization",
                    stats.AVERAGE,
                    namespace=constants.SAGEMAKER_METRICS_NAMESPACE,
                    label="GPU",
                ),
                metrics.endpoint_metric(
                    "GPUMemoryUtilization",
                    stats.AVERAGE,
                    namespace=constants.SAGEMAKER_METRICS_NAMESPACE,
                    label="GPU memory",
                ),
            ],
            width=width,
            height=6,
        ),
    ]


def no_endpoint_widget() -> cloudwatch.IWidget:
    return cloudwatch.TextWidget(
        markdown=(
            "### No endpoint deployed\nUploads wait in the queue until a deploy sets "
            "`endpoint.model_data_uri` or `training.serve_registered_model`; endpoint widgets and "
            "alarms appear then."
        ),
        width=DASHBOARD_WIDTH,
        height=2,
    )


def window_widgets(
    metrics: MonitoringMetrics, service: str, state_machine: sfn.IStateMachine
) -> list[cloudwatch.IWidget]:
    """endpoint.mode scheduled: how long photos wait, what the windows labelled, and the windows themselves."""
    period = Duration.minutes(15)
    waiting = cloudwatch.Metric(
        namespace=metrics.namespace,
        metric_name="OldestPendingSeconds",
        dimensions_map={"service": service},
        statistic=cloudwatch.Stats.MAXIMUM,
        period=period,
        label="oldest PENDING photo (s)",
    )
    labelled = [
        metrics.photo_metric(name, service, period=Duration.hours(1))
        for name in (
            "PhotosLabeled",
            "PhotosNeedsReview",
            "PhotosRejected",
            "PhotosInferred",
            "WindowPhotosFailed",
        )
    ]
    runs = [
        state_machine.metric_succeeded(
            period=Duration.hours(1), statistic=cloudwatch.Stats.SUM, label="succeeded"
        ),
        state_machine.metric_failed(period=Duration.hours(1), statistic=cloudwatch.Stats.SUM, label="failed"),
    ]
    return [
        cloudwatch.GraphWidget(
            title="Scheduled mode: oldest PENDING photo (s)", left=[waiting], width=8, height=6
        ),
        cloudwatch.GraphWidget(title="Windows: photos per hour", left=labelled, width=8, height=6),
        cloudwatch.GraphWidget(title="Window executions per hour", left=runs, width=8, height=6),
    ]


def queue_widgets(
    metrics: MonitoringMetrics,
    *,
    queue: sqs.IQueue,
    dead_letter_queue: sqs.IQueue,
    upload_function: lambda_.IFunction,
    queue_age_alarm_seconds: int | None,
) -> list[cloudwatch.IWidget]:
    """The upload queue, its DLQ and the upload Lambda; the queue-age alarm's line when that alarm exists."""
    width = DASHBOARD_WIDTH // 3
    period = Duration.seconds(constants.ALARM_PERIOD_SECONDS)
    return [
        cloudwatch.GraphWidget(
            title="Upload queue: age of oldest message (s)",
            left=[queue.metric_approximate_age_of_oldest_message(period=period, label="oldest (s)")],
            left_annotations=[cloudwatch.HorizontalAnnotation(value=queue_age_alarm_seconds, label="alarm")]
            if queue_age_alarm_seconds is not None
            else None,
            width=width,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Queue depth and dead-letter queue",
            left=[
                queue.metric_approximate_number_of_messages_visible(period=period, label="waiting"),
                queue.metric_approximate_number_of_messages_not_visible(period=period, label="in flight"),
            ],
            right=[dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, label="DLQ")],
            width=width,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Upload labeller Lambda",
            left=[
                upload_function.metric_invocations(period=period, label="invocations"),
                upload_function.metric_errors(period=period, label="errors"),
                upload_function.metric_throttles(period=period, label="throttles"),
                metrics.photo_metric("TransientFailures", constants.POWERTOOLS_SERVICE_NAME, label="transient"),
            ],
            right=[upload_function.metric_duration(period=period, statistic="p90", label="duration p90")],
            width=width,
            height=6,
        ),
    ]


def backfill_widgets(
    metrics: MonitoringMetrics, service: str, state_machine: sfn.IStateMachine, function: lambda_.IFunction
) -> list[cloudwatch.IWidget]:
    width = DASHBOARD_WIDTH // 3
    period = RATE_PERIOD
    processed = {f"p{i}": metrics.photo_metric(name, service) for i, name in enumerate(PROGRESS_METRICS)}
    return [
        cloudwatch.GraphWidget(
            title="Backfill progress (photos processed per minute)",
            left=[
                cloudwatch.MathExpression(
                    expression=" + ".join(f"FILL({key}, 0)" for key in processed),
                    using_metrics=processed,
                    label="processed/min",
                    period=period,
                ),
                metrics.photo_metric("TransientFailures", service, label="transient failures/min"),
            ],
            width=width,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Backfill executions",
            left=[
                state_machine.metric_started(period=period, label="started"),
                state_machine.metric_succeeded(period=period, label="succeeded"),
                state_machine.metric_failed(period=period, label="failed"),
                state_machine.metric_aborted(period=period, label="aborted"),
            ],
            width=width,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Backfill Lambda (batches)",
            left=[
                function.metric_invocations(period=period, label="batches"),
                function.metric_errors(period=period, label="errors (retried)"),
                function.metric_throttles(period=period, label="throttles"),
            ],
            right=[function.metric_duration(period=period, statistic="p90", label="duration p90")],
            width=width,
            height=6,
        ),
    ]


def async_widgets(metrics: MonitoringMetrics, ref: AsyncRef) -> list[cloudwatch.IWidget]:
    width = DASHBOARD_WIDTH // 3
    return [
        cloudwatch.GraphWidget(
            title="Async backlog (requests waiting)",
            left=[
                async_metric(ref.endpoint_name, BACKLOG_SIZE, "Average"),
                async_metric(ref.endpoint_name, BACKLOG_PER_INSTANCE, "Average"),
            ],
            right=[async_metric(ref.endpoint_name, OLDEST_REQUEST_AGE, "Maximum")],
            width=width,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Backlog without capacity (1 = scaling out from zero)",
            left=[async_metric(ref.endpoint_name, HAS_BACKLOG_WITHOUT_CAPACITY, "Maximum")],
            width=width,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Failed async notifications (DLQ)",
            left=[
                ref.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=RATE_PERIOD, statistic=cloudwatch.Stats.MAXIMUM, label="dead letters"
                ),
                metrics.photo_metric("AsyncInferencesResubmitted", constants.POWERTOOLS_SERVICE_NAME),
                metrics.photo_metric("AsyncInferencesFailed", constants.POWERTOOLS_SERVICE_NAME),
            ],
            width=width,
            height=6,
        ),
    ]
