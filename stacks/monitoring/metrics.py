"""The metrics the operations dashboard and its alarms read (stacks/monitoring/alarms.py).

The labeller's EMF metrics are told apart by their `service` dimension (uploads and backfill); SageMaker's
invocation and instance metrics are those of one endpoint variant.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn

from stacks.common import constants

SAGEMAKER_NAMESPACE = constants.SAGEMAKER_INVOCATION_NAMESPACE
RATE_PERIOD = Duration.minutes(1)  # "per minute" graphs
DISTRIBUTION_PERIOD = Duration.hours(1)
STATUS_METRICS = (
    ("PhotosLabeled", "labelled"),
    ("PhotosNeedsReview", "needs review"),
    ("PhotosRejected", "rejected"),
    ("PhotosSkipped", "skipped"),
)
# Everything that consumes a photo counts as progress for the stall alarm: duplicates and already-labelled
# photos are skipped, not stuck.
PROGRESS_METRICS = tuple(name for name, _ in STATUS_METRICS)
# An async endpoint's backlog metrics: its autoscaling (stacks/serving/async_scaling.py) and
# the dashboard read them.
BACKLOG_PER_INSTANCE = "ApproximateBacklogSizePerInstance"
HAS_BACKLOG_WITHOUT_CAPACITY = "HasBacklogWithoutCapacity"
BACKLOG_SIZE = "ApproximateBacklogSize"
OLDEST_REQUEST_AGE = "ApproximateAgeOfOldestRequest"
ASYNC_METRIC_PERIOD = Duration.minutes(1)


def async_metric(endpoint_name: str, metric_name: str, statistic: str = "Average") -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=SAGEMAKER_NAMESPACE,
        metric_name=metric_name,
        dimensions_map={"EndpointName": endpoint_name},
        statistic=statistic,
        period=ASYNC_METRIC_PERIOD,
    )


@dataclass(frozen=True)
class EndpointRef:
    endpoint_name: str
    variant_name: str = constants.VARIANT_NAME


@dataclass(frozen=True)
class AsyncRef:
    """endpoint.mode async: the endpoint of the backlog metrics, the notification DLQ and its alarm."""

    endpoint_name: str
    dead_letter_queue: sqs.IQueue
    dlq_alarm: cloudwatch.IAlarm
    backlog_age_alarm_seconds: int


@dataclass(frozen=True)
class WindowRef:
    """endpoint.mode scheduled: the windows' state machine, their metrics' service and their alarms."""

    state_machine: sfn.IStateMachine
    service_name: str
    alarms: tuple[cloudwatch.IAlarm, ...]


@dataclass(frozen=True)
class MonitoringMetrics:
    """The labeller's metrics in `namespace` and, when one is deployed, the endpoint's."""

    namespace: str
    endpoint: EndpointRef | None = None

    def photo_metric(
        self, name: str, service: str, *, label: str | None = None, period: Duration = RATE_PERIOD
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self.namespace,
            metric_name=name,
            dimensions_map={"service": service},
            statistic=cloudwatch.Stats.SUM,
            period=period,
            label=label,
        )

    def label_metric(self, label: str, service: str, period: Duration = DISTRIBUTION_PERIOD) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self.namespace,
            metric_name="PhotosByLabel",
            dimensions_map={"service": service, "label": label},
            statistic=cloudwatch.Stats.SUM,
            period=period,
            label=label,
        )

    def endpoint_metric(
        self,
        name: str,
        statistic: str,
        *,
        namespace: str = SAGEMAKER_NAMESPACE,
        period: Duration = RATE_PERIOD,
        label: str | None = None,
    ) -> cloudwatch.Metric:
        assert self.endpoint is not None, "endpoint widgets and alarms exist only with an endpoint"
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map={
                "EndpointName": self.endpoint.endpoint_name,
                "VariantName": self.endpoint.variant_name,
            },
            statistic=statistic,
            period=period,
            label=label,
        )
