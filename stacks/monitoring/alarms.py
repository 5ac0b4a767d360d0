"""The operations dashboard and the alarms that page someone, all sent to the stack's alarm topic.

Metric names and the namespace are the Lambda's EMF metrics (docs/interfaces.md). Uploads publish them with
`service=photo-labeler`, the backfill with `service=photo-labeler-backfill`, so the two paths are graphed side by
side and a running backfill can never hide a stalled upload path from the stall alarm.

Without an endpoint (no model yet) uploads wait in the queue on purpose, so the endpoint widgets, the queue-age
alarm, the stall alarm and the endpoint-error alarm exist only when an endpoint is deployed. The DLQ alarm is the
upload path's own (stacks/labelling/upload_path.py); the dashboard shows it instead of defining a second one. With
the review page deployed (`review.enabled`), a last row graphs the review API's metrics: the backlog of unsure
labels, decisions per hour and the reviewers' agreement with the model per day (stacks/review/parts.py).

The metrics are defined in stacks/monitoring/metrics.py, the dashboard's rows in stacks/monitoring/dashboard.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.common import constants
from stacks.config import MonitoringConfig
from stacks.monitoring.alarm_topic import alarm_name, notify
from stacks.monitoring.dashboard import (
    DASHBOARD_WIDTH,
    async_widgets,
    backfill_widgets,
    endpoint_widgets,
    label_widgets,
    no_endpoint_widget,
    photo_widgets,
    queue_widgets,
    window_widgets,
)
from stacks.monitoring.metrics import (
    OLDEST_REQUEST_AGE,
    PROGRESS_METRICS,
    AsyncRef,
    EndpointRef,
    MonitoringMetrics,
    WindowRef,
    async_metric,
)
from stacks.review.parts import review_dashboard_widgets

SCHEDULED_PROGRESS_METRICS = ("PhotosPending", "PhotosRejected", "PhotosSkipped")


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
        window: WindowRef | None = None,
    ) -> None:
        # Alarms defined elsewhere (DLQ, training failures, the endpoint's rollback alarms) are shown, not copied.
        # review_backlog_probe_minutes: the review page's backlog probe interval; None when no page is deployed
        # (its widgets are left out).
        super().__init__(scope, construct_id)
        self._review_backlog_probe_minutes = review_backlog_probe_minutes
        self._name_prefix = name_prefix
        self.config = config
        self.metrics: MonitoringMetrics = MonitoringMetrics(metrics_namespace, endpoint)
        self._labels = tuple(labels)
        self._queue = queue
        self._dlq = dead_letter_queue
        self._endpoint = endpoint
        self._services = {"uploads": constants.POWERTOOLS_SERVICE_NAME}
        if backfill_service_name is not None:
            self._services["backfill"] = backfill_service_name
        self._alarm_topic = alarm_topic

        self.queue_age_alarm: cloudwatch.Alarm | None = None
        self.stall_alarm: cloudwatch.Alarm | None = None
        self.endpoint_errors_alarm: cloudwatch.Alarm | None = None
        self.backfill_failed_alarm: cloudwatch.Alarm | None = None
        self._window = window
        # The upload path runs with an endpoint, or in scheduled mode (it records PENDING without one).
        if endpoint is not None or window is not None:
            self.queue_age_alarm = self._queue_age_alarm()
            self.stall_alarm = self._stall_alarm()
        if endpoint is not None:
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
                *(window.alarms if window is not None else ()),
            )
            if alarm is not None
        ]
        self.dashboard: cloudwatch.Dashboard = self._dashboard(
            f"{name_prefix}-operations", upload_function, backfill_state_machine, backfill_function
        )

    # -- alarms ---------------------------------------------------------------------------------------------

    def _notify(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        return notify(alarm, self._alarm_topic)

    def _queue_age_alarm(self) -> cloudwatch.Alarm:
        threshold = self.config.queue_age_alarm_seconds
        return self._notify(
            cloudwatch.Alarm(
                self,
                "QueueAgeAlarm",
                alarm_name=alarm_name(self._name_prefix, "upload-queue-age"),
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
        # Scheduled mode's upload labeller labels nothing: its progress is recording PENDING, rejecting, skipping.
        progress = SCHEDULED_PROGRESS_METRICS if self._window is not None else PROGRESS_METRICS
        for index, name in enumerate(progress):
            using[f"p{index}"] = self.metrics.photo_metric(name, service, period=period)
        processed = " + ".join(f"FILL(p{index}, 0)" for index in range(len(progress)))
        expression = f"IF(FILL(waiting, 0) > 0 AND ({processed}) == 0, 1, 0)"
        return self._notify(
            cloudwatch.Alarm(
                self,
                "StallAlarm",
                alarm_name=alarm_name(self._name_prefix, "upload-stalled"),
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
                alarm_name=alarm_name(self._name_prefix, "endpoint-5xx"),
                alarm_description=(
                    f"The endpoint answered 5xx at least {threshold} times in 5 minutes (model server crash, "
                    "out of GPU memory, instance replacement). Messages are retried; check the endpoint's "
                    f"logs in {constants.SAGEMAKER_LOG_GROUP_PREFIX}/{self._endpoint_name}."
                ),
                metric=self.metrics.endpoint_metric(
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
                alarm_name=alarm_name(self._name_prefix, "backfill-failed"),
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
        dashboard.add_widgets(*photo_widgets(self.metrics, self._services))
        dashboard.add_widgets(*label_widgets(self.metrics, self._services, self._labels))
        if self._endpoint is not None:
            dashboard.add_widgets(*endpoint_widgets(self.metrics))
        elif self._window is not None:
            dashboard.add_widgets(
                *window_widgets(self.metrics, self._window.service_name, self._window.state_machine)
            )
        else:
            dashboard.add_widgets(no_endpoint_widget())
        # The queue-age alarm exists only when the upload path runs; so does its line on the queue graph.
        alarm_seconds = self.config.queue_age_alarm_seconds if self.queue_age_alarm is not None else None
        dashboard.add_widgets(
            *queue_widgets(
                self.metrics,
                queue=self._queue,
                dead_letter_queue=self._dlq,
                upload_function=upload_function,
                queue_age_alarm_seconds=alarm_seconds,
            )
        )
        if self._async is not None:
            dashboard.add_widgets(*async_widgets(self.metrics, self._async))
        if state_machine is not None and backfill_function is not None:
            dashboard.add_widgets(
                *backfill_widgets(self.metrics, self._services["backfill"], state_machine, backfill_function)
            )
        if self._review_backlog_probe_minutes is not None:
            dashboard.add_widgets(
                *review_dashboard_widgets(
                    self.metrics.namespace,
                    backlog_probe_minutes=self._review_backlog_probe_minutes,
                    width=DASHBOARD_WIDTH,
                )
            )
        return dashboard

    # -- endpoint.mode async ---------------------------------------------------------------------------------

    def _async_backlog_age_alarm(self, ref: AsyncRef) -> cloudwatch.Alarm:
        seconds = ref.backlog_age_alarm_seconds
        return self._notify(
            cloudwatch.Alarm(
                self,
                "AsyncBacklogAgeAlarm",
                alarm_name=alarm_name(self._name_prefix, "async-backlog-age"),
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


__all__ = ["AsyncRef", "EndpointRef", "Monitoring", "MonitoringConfig", "WindowRef"]
