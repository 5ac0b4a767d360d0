"""The operations dashboard and the alarms that page someone, all sent to the stack's alarm topic.

Metric names and the namespace are the Lambda's EMF metrics (docs/interfaces.md). Uploads publish them with
`service=photo-labeler`, the backfill with `service=photo-labeler-backfill`, so the two paths are graphed side by
side and a running backfill can never hide a stalled upload path from the stall alarm.

Without an endpoint (no model yet) uploads wait in the queue on purpose, so the endpoint widgets, the queue-age
alarm, the stall alarm and the endpoint-error alarm exist only when an endpoint is deployed. The DLQ alarm is the
upload path's own (stacks/upload_path.py); the dashboard shows it instead of defining a second one. With the
review page deployed (`review.enabled`), a last row graphs the review API's metrics: the backlog of unsure labels,
decisions per hour and the reviewers' agreement with the model per day (stacks/review_parts.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks import constants
from stacks.async_scaling import (
    BACKLOG_PER_INSTANCE,
    BACKLOG_SIZE,
    HAS_BACKLOG_WITHOUT_CAPACITY,
    OLDEST_REQUEST_AGE,
    async_metric,
)
from stacks.config import MonitoringConfig
from stacks.review_parts import review_dashboard_widgets

SAGEMAKER_NAMESPACE = "AWS/SageMaker"  # invocation metrics (the instance metrics live in constants')
RATE_PERIOD = Duration.minutes(1)  # "per minute" graphs
DISTRIBUTION_PERIOD = Duration.hours(1)
DASHBOARD_WIDTH = 24  # CloudWatch dashboards are 24 columns wide
STATUS_METRICS = (
    ("PhotosLabeled", "labelled"),
    ("PhotosNeedsReview", "needs review"),
    ("PhotosRejected", "rejected"),
    ("PhotosSkipped", "skipped"),
)
# Everything that consumes a photo counts as progress for the stall alarm: duplicates and already-labelled
# photos are skipped, not stuck.
PROGRESS_METRICS = tuple(name for name, _ in STATUS_METRICS)


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


class Monitoring(Construct):
    """One dashboard (`<name_prefix>-operations`) and the alarms; each alarm is a public attribute."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: MonitoringConfig,
        name_prefix: str,
        metrics_namespace: str,
        labels: Sequence[str],
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        dlq_alarm: cloudwatch.IAlarm,
        upload_function: lambda_.IFunction,
        alarm_topic: sns.ITopic,
        endpoint: EndpointRef | None = None,
        backfill_state_machine: sfn.IStateMachine | None = None,
        backfill_function: lambda_.IFunction | None = None,
        backfill_service_name: str | None = None,
        training_failed_alarm: cloudwatch.IAlarm | None = None,
        rollout_alarms: Sequence[cloudwatch.IAlarm] = (),
        review_backlog_probe_minutes: int | None = None,
        async_inference: AsyncRef | None = None,
    ) -> None:
        # Alarms defined elsewhere (DLQ, training failures, the endpoint's rollback alarms) are shown, not copied.
        # review_backlog_probe_minutes: the review page's backlog probe interval; None when no page is deployed
        # (its widgets are left out).
        super().__init__(scope, construct_id)
        self._review_backlog_probe_minutes = review_backlog_probe_minutes
        self.config = config
        self._namespace = metrics_namespace
        self._labels = tuple(labels)
        self._queue = queue
        self._dlq = dead_letter_queue
        self._endpoint = endpoint
        self._services = {"uploads": constants.POWERTOOLS_SERVICE_NAME}
        if backfill_service_name is not None:
            self._services["backfill"] = backfill_service_name
        self._action = cloudwatch_actions.SnsAction(alarm_topic)

        self.queue_age_alarm: cloudwatch.Alarm | None = None
        self.stall_alarm: cloudwatch.Alarm | None = None
        self.endpoint_errors_alarm: cloudwatch.Alarm | None = None
        self.backfill_failed_alarm: cloudwatch.Alarm | None = None
        if endpoint is not None:
            self.queue_age_alarm = self._queue_age_alarm()
            self.stall_alarm = self._stall_alarm()
            self.endpoint_errors_alarm = self._endpoint_errors_alarm()
        if backfill_state_machine is not None and config.backfill_failed_alarm:
            self.backfill_failed_alarm = self._backfill_failed_alarm(backfill_state_machine)
        self._async = async_inference
        self.async_backlog_age_alarm: cloudwatch.Alarm | None = (
            self._async_backlog_age_alarm(async_inference) if async_inference is not None else None
        )
        self.alarms: list[cloudwatch.IAlarm] = [dlq_alarm] + [
            alarm
            for alarm in (
                self.queue_age_alarm,
                self.stall_alarm,
                self.endpoint_errors_alarm,
                self.backfill_failed_alarm,
                self.async_backlog_age_alarm,
                async_inference.dlq_alarm if async_inference is not None else None,
                training_failed_alarm,
                *rollout_alarms,
            )
            if alarm is not None
        ]
        self.dashboard: cloudwatch.Dashboard = self._dashboard(
            f"{name_prefix}-operations", upload_function, backfill_state_machine, backfill_function
        )

    # -- metrics --------------------------------------------------------------------------------------------

    def photo_metric(
        self, name: str, service: str, *, label: str | None = None, period: Duration = RATE_PERIOD
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self._namespace,
            metric_name=name,
            dimensions_map={"service": service},
            statistic=cloudwatch.Stats.SUM,
            period=period,
            label=label,
        )

    def label_metric(self, label: str, service: str, period: Duration = DISTRIBUTION_PERIOD) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self._namespace,
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
        assert self._endpoint is not None
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map={
                "EndpointName": self._endpoint.endpoint_name,
                "VariantName": self._endpoint.variant_name,
            },
            statistic=statistic,
            period=period,
            label=label,
        )

    # -- alarms ---------------------------------------------------------------------------------------------

    def _notify(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        return alarm

    def _queue_age_alarm(self) -> cloudwatch.Alarm:
        threshold = self.config.queue_age_alarm_seconds
        return self._notify(
            cloudwatch.Alarm(
                self,
                "QueueAgeAlarm",
                alarm_description=(
                    f"The oldest upload has waited more than {threshold} s for 5 minutes: the labeller is not "
                    "keeping up (endpoint at max capacity, throttled or failing). Check the dashboard's endpoint "
                    "and Lambda widgets; raise endpoint.max_capacity or pause the backfill."
                ),
                metric=self._queue.metric_approximate_age_of_oldest_message(
                    period=Duration.seconds(constants.ALARM_PERIOD_SECONDS), statistic=cloudwatch.Stats.MAXIMUM
                ),
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=5,
                datapoints_to_alarm=5,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def _stall_alarm(self) -> cloudwatch.Alarm:
        minutes = self.config.stall_alarm_minutes
        period = Duration.minutes(minutes)
        service = constants.POWERTOOLS_SERVICE_NAME
        using: dict[str, cloudwatch.IMetric] = {
            # Minimum over the window: the queue held messages the whole time, not just at its end.
            "waiting": self._queue.metric_approximate_number_of_messages_visible(
                period=period, statistic=cloudwatch.Stats.MINIMUM
            ),
        }
        for index, name in enumerate(PROGRESS_METRICS):
            using[f"p{index}"] = self.photo_metric(name, service, period=period)
        processed = " + ".join(f"FILL(p{index}, 0)" for index in range(len(PROGRESS_METRICS)))
        expression = f"IF(FILL(waiting, 0) > 0 AND ({processed}) == 0, 1, 0)"
        return self._notify(
            cloudwatch.Alarm(
                self,
                "StallAlarm",
                alarm_description=(
                    f"No upload was processed for {minutes} min although the queue never emptied: the labeller "
                    "is stuck (function errors, endpoint down, or the event source disabled). Check the "
                    "labeller's logs and the endpoint."
                ),
                metric=cloudwatch.MathExpression(
                    expression=expression, using_metrics=using, period=period, label="stalled (1 = yes)"
                ),
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    @property
    def _endpoint_name(self) -> str:
        assert self._endpoint is not None, "endpoint widgets and alarms exist only with an endpoint"
        return self._endpoint.endpoint_name

    def _endpoint_errors_alarm(self) -> cloudwatch.Alarm:
        threshold = self.config.endpoint_5xx_alarm_threshold
        return self._notify(
            cloudwatch.Alarm(
                self,
                "EndpointErrorsAlarm",
                alarm_description=(
                    f"The endpoint answered 5xx at least {threshold} times in 5 minutes (model server crash, "
                    "out of GPU memory, instance replacement). Messages are retried; check the endpoint's "
                    f"logs in {constants.SAGEMAKER_LOG_GROUP_PREFIX}/{self._endpoint_name}."
                ),
                metric=self.endpoint_metric(
                    "Invocation5XXErrors", cloudwatch.Stats.SUM, period=Duration.minutes(5)
                ),
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def _backfill_failed_alarm(self, state_machine: sfn.IStateMachine) -> cloudwatch.Alarm:
        period = Duration.minutes(5)
        using = {
            "failed": state_machine.metric_failed(period=period, statistic=cloudwatch.Stats.SUM),
            "timedout": state_machine.metric_timed_out(period=period, statistic=cloudwatch.Stats.SUM),
        }  # not aborted: stopping a backfill is an operator's decision, not an incident
        return self._notify(
            cloudwatch.Alarm(
                self,
                "BackfillFailedAlarm",
                alarm_description=(
                    "A backfill execution failed or timed out (bad input, or more failed items than "
                    "backfill.tolerated_failure_percentage). `python -m tools.backfill status <execution>` shows "
                    "the counts and error; failed batches are listed in the results bucket and "
                    "`python -m tools.backfill redrive <execution>` retries only them."
                ),
                metric=cloudwatch.MathExpression(
                    expression="FILL(failed, 0) + FILL(timedout, 0)",
                    using_metrics=using,
                    period=period,
                    label="backfill executions failed or timed out",
                ),
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    # -- dashboard ------------------------------------------------------------------------------------------

    def _dashboard(
        self,
        name: str,
        upload_function: lambda_.IFunction,
        state_machine: sfn.IStateMachine | None,
        backfill_function: lambda_.IFunction | None,
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=name, default_interval=Duration.hours(3)
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=DASHBOARD_WIDTH, height=3)
        )
        dashboard.add_widgets(*self._photo_widgets())
        dashboard.add_widgets(*self._label_widgets())
        if self._endpoint is not None:
            dashboard.add_widgets(*self._endpoint_widgets())
        else:
            dashboard.add_widgets(
                cloudwatch.TextWidget(
                    markdown=(
                        "### No endpoint deployed\nUploads wait in the queue until a deploy sets "
                        "`endpoint.model_data_uri` or `training.serve_registered_model`; endpoint widgets and "
                        "alarms appear then."
                    ),
                    width=DASHBOARD_WIDTH,
                    height=2,
                )
            )
        dashboard.add_widgets(*self._queue_widgets(upload_function))
        if self._async is not None:
            dashboard.add_widgets(*self._async_widgets(self._async))
        if state_machine is not None and backfill_function is not None:
            dashboard.add_widgets(*self._backfill_widgets(state_machine, backfill_function))
        if self._review_backlog_probe_minutes is not None:
            dashboard.add_widgets(
                *review_dashboard_widgets(
                    self._namespace,
                    backlog_probe_minutes=self._review_backlog_probe_minutes,
                    width=DASHBOARD_WIDTH,
                )
            )
        return dashboard

    def _photo_widgets(self) -> list[cloudwatch.IWidget]:
        widgets: list[cloudwatch.IWidget] = []
        width = DASHBOARD_WIDTH // len(self._services)
        for path, service in self._services.items():
            widgets.append(
                cloudwatch.GraphWidget(
                    title=f"Photos per minute ({path})",
                    left=[self.photo_metric(name, service, label=label) for name, label in STATUS_METRICS],
                    width=width,
                    height=6,
                    stacked=True,
                    left_y_axis=cloudwatch.YAxisProps(min=0, label="photos/min", show_units=False),
                )
            )
        return widgets

    def _label_widgets(self) -> list[cloudwatch.IWidget]:
        # One metric per taxonomy label: the taxonomy is known at synth, and a fixed list keeps colours stable.
        width = DASHBOARD_WIDTH // len(self._services)
        return [
            cloudwatch.GraphWidget(
                title=f"Label distribution ({path}, over the time range)",
                left=[self.label_metric(label, service) for label in self._labels],
                view=cloudwatch.GraphWidgetView.PIE,
                set_period_to_time_range=True,
                width=width,
                height=8,
                legend_position=cloudwatch.LegendPosition.RIGHT,
            )
            for path, service in self._services.items()
        ]

    def _endpoint_widgets(self) -> list[cloudwatch.IWidget]:
        width = DASHBOARD_WIDTH // 4
        stats = cloudwatch.Stats
        return [
            cloudwatch.GraphWidget(
                title="Endpoint invocations and errors per minute",
                left=[self.endpoint_metric("Invocations", stats.SUM, label="invocations")],
                right=[
                    self.endpoint_metric("Invocation4XXErrors", stats.SUM, label="4xx"),
                    self.endpoint_metric("Invocation5XXErrors", stats.SUM, label="5xx"),
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
                        using_metrics={"lat50": self.endpoint_metric("ModelLatency", stats.percentile(50))},
                        label="model p50",
                        period=RATE_PERIOD,
                    ),
                    cloudwatch.MathExpression(
                        expression="lat90 / 1000",
                        using_metrics={"lat90": self.endpoint_metric("ModelLatency", stats.percentile(90))},
                        label="model p90",
                        period=RATE_PERIOD,
                    ),
                    cloudwatch.Metric(
                        namespace=self._namespace,
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
                    self.endpoint_metric(
                        "ConcurrentRequestsPerModel", stats.MAXIMUM, label="concurrent requests per model (max)"
                    )
                ],
                right=[
                    # No instance-count metric exists: each instance reports CPUUtilization once a minute, so
                    # the sample count is the number of instances in service.
                    self.endpoint_metric(
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
                    self.endpoint_metric(
                        "GPUUtilization",
                        stats.AVERAGE,
                        namespace=constants.SAGEMAKER_METRICS_NAMESPACE,
                        label="GPU",
                    ),
                    self.endpoint_metric(
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

    def _queue_widgets(self, upload_function: lambda_.IFunction) -> list[cloudwatch.IWidget]:
        width = DASHBOARD_WIDTH // 3
        period = Duration.seconds(constants.ALARM_PERIOD_SECONDS)
        return [
            cloudwatch.GraphWidget(
                title="Upload queue: age of oldest message (s)",
                left=[self._queue.metric_approximate_age_of_oldest_message(period=period, label="oldest (s)")],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=self.config.queue_age_alarm_seconds, label="alarm")
                ]
                if self._endpoint is not None
                else None,
                width=width,
                height=6,
            ),
            cloudwatch.GraphWidget(
                title="Queue depth and dead-letter queue",
                left=[
                    self._queue.metric_approximate_number_of_messages_visible(period=period, label="waiting"),
                    self._queue.metric_approximate_number_of_messages_not_visible(
                        period=period, label="in flight"
                    ),
                ],
                right=[self._dlq.metric_approximate_number_of_messages_visible(period=period, label="DLQ")],
                width=width,
                height=6,
            ),
            cloudwatch.GraphWidget(
                title="Upload labeller Lambda",
                left=[
                    upload_function.metric_invocations(period=period, label="invocations"),
                    upload_function.metric_errors(period=period, label="errors"),
                    upload_function.metric_throttles(period=period, label="throttles"),
                    self.photo_metric("TransientFailures", constants.POWERTOOLS_SERVICE_NAME, label="transient"),
                ],
                right=[upload_function.metric_duration(period=period, statistic="p90", label="duration p90")],
                width=width,
                height=6,
            ),
        ]

    def _backfill_widgets(
        self, state_machine: sfn.IStateMachine, function: lambda_.IFunction
    ) -> list[cloudwatch.IWidget]:
        width = DASHBOARD_WIDTH // 3
        period = RATE_PERIOD
        service = self._services["backfill"]
        processed = {f"p{i}": self.photo_metric(name, service) for i, name in enumerate(PROGRESS_METRICS)}
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
                    self.photo_metric("TransientFailures", service, label="transient failures/min"),
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

    # -- endpoint.mode async ---------------------------------------------------------------------------------

    def _async_backlog_age_alarm(self, ref: AsyncRef) -> cloudwatch.Alarm:
        seconds = ref.backlog_age_alarm_seconds
        return self._notify(
            cloudwatch.Alarm(
                self,
                "AsyncBacklogAgeAlarm",
                alarm_description=(
                    f"The oldest request on the async endpoint has waited over {seconds} s for 5 minutes: the "
                    "fleet is not keeping up (at endpoint.max_capacity, or instances fail to start). Requests "
                    "expire after async_inference.request_ttl_seconds and are then resubmitted up to max_attempts."
                ),
                metric=async_metric(ref.endpoint_name, OLDEST_REQUEST_AGE, "Maximum"),
                threshold=seconds,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=5,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def _async_widgets(self, ref: AsyncRef) -> list[cloudwatch.IWidget]:
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
                    self.photo_metric("AsyncInferencesResubmitted", constants.POWERTOOLS_SERVICE_NAME),
                    self.photo_metric("AsyncInferencesFailed", constants.POWERTOOLS_SERVICE_NAME),
                ],
                width=width,
                height=6,
            ),
        ]


__all__ = ["AsyncRef", "EndpointRef", "Monitoring", "MonitoringConfig"]
