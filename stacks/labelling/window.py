"""endpoint.mode scheduled's windows: a state machine started on a schedule (and early on a backlog) that labels
the PENDING photos with a Spot labelling job (docs/scheduled-mode.md, "Windows").

    Window -> Survey (Lambda) -> Decide -> CheckOverlap (ListExecutions) -> Overlap? -> ResolveModel -> Plan
      -> Photos? -> LabelOnSpot (createTrainingJob.sync) | DescribeSpotJob -> JobOutcome
      -> [LabelOnDemand | DescribeOnDemandJob -> JobOutcome] -> Report -> Done | ReportFailedWindow -> WindowFailed

- Two EventBridge Scheduler schedules start it: `scheduled.schedule` (input {"trigger": "schedule"}) and the
  backlog check every `backlog_check_minutes` ({"trigger": "backlog"}), which only goes on when the backlog reached
  `backlog_threshold` or the oldest photo waited longer than a window interval plus one check (a regular window was
  missed, e.g. both schedules fired together and each saw the other running).
- Nothing pending: nothing starts. Another execution running: this one ends (windows never overlap; two started in
  the same instant both end, the next check starts one).
- Spot and the on-demand fallback share the manifest and the checkpoint, so the fallback resumes; a job that ends
  otherwise than Completed fails the window (alarm) after reporting what it did: its unlabelled photos are still
  PENDING and the next window takes them.
- Every survey emits `OldestPendingSeconds`; the pending-age alarm fires when a photo has waited more than
  `pending_age_alarm_hours` (two windows by default) or when no survey ran for two backlog checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from classification.labeller_environment import WindowEnvironment
from stacks.common import constants
from stacks.common.encrypted_logs import encrypted_log_group
from stacks.common.lambda_bundling import ARCHITECTURE, RUNTIME
from stacks.common.lambda_role import lambda_role
from stacks.common.lmi_image import LmiImageTable, default_table
from stacks.common.nag import acknowledge, nag_resource
from stacks.common.sagemaker_jobs import TRAINING_LOG_GROUP, grant_sync_training_job, sagemaker_arn
from stacks.config.sections import ScheduledLabellingConfig
from stacks.labelling.job import WINDOWS_PREFIX, build_job_role, job_name_pattern
from stacks.labelling.job_code import labelling_code_asset
from stacks.labelling.labeller_function import LabellerProps
from stacks.labelling.window_states import WindowStates
from stacks.monitoring.alarm_topic import alarm_name, notify
from stacks.storage import labels_table
from stacks.storage.derived_bucket import derived_bucket
from stacks.storage.model_store import ModelStore

WINDOW_HANDLER = "window_handler.lambda_handler"  # lambda/window_handler.py
WINDOW_SERVICE_NAME = "photo-labeler-window"  # its metrics' `service` dimension
STATE_MACHINE_SLACK_SECONDS = 3600  # on top of both jobs' limits: planning, API calls, the report
WINDOW_FUNCTION_TIMEOUT_SECONDS = 300  # a plan pages ~100k items and writes ~50 shards: well under a minute
WINDOW_FUNCTION_MEMORY_MB = 512
MISSING_SURVEYS = 2  # backlog checks in a row without a survey that raise the pending-age alarm


class LabellingWindow(Construct):
    """Work bucket, window Lambda, labelling job role, state machine, schedules and alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ScheduledLabellingConfig,
        labeller: LabellerProps,
        photo_prefixes: Sequence[str],
        model_store: ModelStore,
        pinned_model_uri: str | None,
        lmi_image_version: str,
        access_log_bucket: s3.IBucket,
        alarm_topic: sns.ITopic,
        image_table: LmiImageTable | None = None,
    ) -> None:
        # pinned_model_uri: endpoint.model_data_uri; None reads the model registry when each window starts.
        super().__init__(scope, construct_id)
        self.config = config
        self.name_prefix = labeller.name_prefix
        self.state_machine_name = f"{labeller.name_prefix}-labelling-window"
        self.labeller = labeller
        self.registry = model_store if pinned_model_uri is None else None
        self.pinned_model_uri = pinned_model_uri
        self.work_bucket: s3.Bucket = self._build_work_bucket(access_log_bucket)
        table = image_table or default_table()
        self.image_uri: str = table.image_uri(self, lmi_image_version)
        self.code = labelling_code_asset(
            self, "Code", taxonomy_file=constants.PROJECT_ROOT / labeller.taxonomy_file
        )
        self.job_role: iam.Role = build_job_role(
            self,
            name_prefix=labeller.name_prefix,
            photos=labeller.bucket,
            photo_prefixes=photo_prefixes,
            table=labeller.table,
            data_key=labeller.data_key,
            work_bucket=self.work_bucket,
            code=self.code,
            model_prefix_uri=pinned_model_uri or model_store.models_uri,
            image_uri=self.image_uri,
            image_repository=table.repository,
        )
        self.function: lambda_.Function = self._build_function()
        self.log_group: logs.LogGroup = encrypted_log_group(
            self,
            "StateMachineLogs",
            log_group_name=f"/aws/vendedlogs/states/{self.state_machine_name}",
            key=labeller.data_key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine: sfn.StateMachine = self._build_state_machine()
        self._grant_state_machine()
        self.schedules: list[scheduler.Schedule] = [
            self._schedule("WindowSchedule", config.schedule, "schedule", "the regular labelling windows"),
            self._schedule(
                "BacklogSchedule",
                f"rate({config.backlog_check_minutes} minute{'s' if config.backlog_check_minutes > 1 else ''})",
                "backlog",
                "counts the PENDING backlog; starts a window early past backlog_threshold",
            ),
        ]
        self.pending_age_alarm: cloudwatch.Alarm = self._pending_age_alarm(alarm_topic, labeller.metrics_namespace)
        self.failed_alarm: cloudwatch.Alarm = self._failed_alarm(alarm_topic)
        self.alarms: tuple[cloudwatch.IAlarm, ...] = (self.pending_age_alarm, self.failed_alarm)

    # -- resources ------------------------------------------------------------------------------------------

    def _build_work_bucket(self, access_log_bucket: s3.IBucket) -> s3.Bucket:
        # Its own bucket: manifests name photos and hotels, and the job role's grants on it cover nothing else.
        # Derived data (the labels table is the record), kept like the backfill's results bucket.
        return derived_bucket(
            self,
            "WorkBucket",
            key=self.labeller.data_key,
            access_log_bucket=access_log_bucket,
            access_log_prefix="labelling-work/",
            expiry_rule_id="expire-windows",
            expire_after_days=self.config.work_retention_days,
            expiring_prefix=WINDOWS_PREFIX,
        )

    def _build_function(self) -> lambda_.Function:
        labeller = self.labeller
        log_group = encrypted_log_group(
            self,
            "FunctionLogs",
            log_group_name=f"/{labeller.name_prefix}/lambda/labelling-window",
            key=labeller.data_key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = lambda_role(
            self,
            "FunctionRole",
            description="Labelling window steps: page PENDING photos, write manifests",
            log_group=log_group,
        )
        function = lambda_.Function(
            self,
            "Function",
            description="Plans and reports the scheduled labelling windows (lambda/window_handler.py)",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=WINDOW_HANDLER,
            code=labeller.code,
            role=role,
            timeout=Duration.seconds(WINDOW_FUNCTION_TIMEOUT_SECONDS),
            memory_size=WINDOW_FUNCTION_MEMORY_MB,
            log_group=log_group,
            environment=WindowEnvironment(
                table_name=labeller.table.table_name,
                work_bucket=self.work_bucket.bucket_name,
                service_name=WINDOW_SERVICE_NAME,
                metrics_namespace=labeller.metrics_namespace,
            ).to_environment(),
        )
        status_index = f"{labeller.table.table_arn}/index/{labels_table.BY_STATUS.name}"
        role.add_to_policy(iam.PolicyStatement(actions=["dynamodb:Query"], resources=[status_index]))
        windows = self.work_bucket.arn_for_objects(f"{WINDOWS_PREFIX}*")
        role.add_to_policy(iam.PolicyStatement(actions=["s3:PutObject", "s3:GetObject"], resources=[windows]))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.work_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{WINDOWS_PREFIX}*"]}},
            )
        )
        # The table and the work bucket are encrypted with the data key.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[labeller.data_key.key_arn]
            )
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, windows)}]",
            "The window writes manifest shards and reads the hosts' summaries under generated names below "
            "windows/ of the dedicated work bucket.",
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "Pinned to Python 3.12 on purpose: it runs the labeller's bundle, whose wheels are fetched for cp312 "
            "(constants.LAMBDA_PYTHON_VERSION).",
        )
        return function

    # -- the state machine ----------------------------------------------------------------------------------

    def _build_state_machine(self) -> sfn.StateMachine:
        cfg = self.config
        limits = cfg.max_job_minutes * 60 + (cfg.max_wait_seconds if cfg.use_spot else 0)
        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            comment="A scheduled labelling window: PENDING photos -> manifest -> Spot labelling job -> labels",
            query_language=sfn.QueryLanguage.JSONATA,
            definition_body=sfn.DefinitionBody.from_chainable(WindowStates(self).definition()),
            timeout=Duration.seconds(limits + STATE_MACHINE_SLACK_SECONDS),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            encryption_configuration=sfn.CustomerManagedEncryptionConfiguration(self.labeller.data_key),
            removal_policy=RemovalPolicy.DESTROY,
        )

    @property
    def state_machine_arn(self) -> str:
        """Formatted from the literal name: the role's policy cannot reference the state machine it belongs to."""
        return Stack.of(self).format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self.state_machine_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    @property
    def job_arn(self) -> str:
        return sagemaker_arn(self, "training-job", f"{job_name_pattern(self.name_prefix)}*")

    def _grant_state_machine(self) -> None:
        role = self.state_machine.role
        grant_sync_training_job(role, job_arn=self.job_arn, job_role=self.job_role)
        reasons = {
            nag_resource(self, self.job_arn): (
                "Each window creates (and describes) labelling jobs with new names; the grant is limited to this "
                "app's labelling job name prefix."
            ),
            f"{nag_resource(self, self.function.function_arn)}:*": (
                "LambdaInvoke grants the function and its versions/aliases (ARN:*); it is the window function "
                "only."
            ),
            "*": (
                "Step Functions log delivery and X-Ray tracing support no resource-level permissions; CDK adds "
                "them for logging and tracing."
            ),
        }
        for resource, reason in reasons.items():
            acknowledge(self.state_machine, f"AwsSolutions-IAM5[Resource::{resource}]", reason)

    # -- schedules and alarms -------------------------------------------------------------------------------

    def _schedule(self, construct_id: str, expression: str, trigger: str, description: str) -> scheduler.Schedule:
        target = scheduler_targets.StepFunctionsStartExecution(
            self.state_machine,
            input=scheduler.ScheduleTargetInput.from_object({"trigger": trigger}),
            # A start that cannot happen soon is worthless: the next backlog check catches the window up.
            max_event_age=Duration.minutes(self.config.backlog_check_minutes),
            retry_attempts=3,
        )
        return scheduler.Schedule(
            self,
            construct_id,
            schedule=scheduler.ScheduleExpression.expression(expression),
            target=target,
            description=f"{self.name_prefix}: {description}",
        )

    def _pending_age_alarm(self, topic: sns.ITopic, namespace: str) -> cloudwatch.Alarm:
        cfg = self.config
        hours = cfg.pending_alarm_seconds / 3600
        alarm = cloudwatch.Alarm(
            self,
            "PendingAgeAlarm",
            alarm_name=alarm_name(self.name_prefix, "window-pending-age"),
            alarm_description=(
                f"A photo has waited PENDING more than {hours:g} h (about two windows), or no window survey ran "
                f"for {MISSING_SURVEYS} backlog checks: windows keep failing (see the window state machine's "
                "failed executions) or are not starting (schedules disabled, state machine or function broken)."
            ),
            metric=cloudwatch.Metric(
                namespace=namespace,
                metric_name="OldestPendingSeconds",
                dimensions_map={"service": WINDOW_SERVICE_NAME},
                statistic=cloudwatch.Stats.MAXIMUM,
                period=Duration.minutes(cfg.backlog_check_minutes),
            ),
            threshold=cfg.pending_alarm_seconds,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=MISSING_SURVEYS,
            datapoints_to_alarm=MISSING_SURVEYS,
            # Every backlog check surveys first, a running window or not: silence means nothing is checking.
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        return notify(alarm, topic)

    def _failed_alarm(self, topic: sns.ITopic) -> cloudwatch.Alarm:
        period = Duration.minutes(5)
        using = {
            "failed": self.state_machine.metric_failed(period=period, statistic=cloudwatch.Stats.SUM),
            "timedout": self.state_machine.metric_timed_out(period=period, statistic=cloudwatch.Stats.SUM),
        }
        alarm = cloudwatch.Alarm(
            self,
            "WindowFailedAlarm",
            alarm_name=alarm_name(self.name_prefix, "window-failed"),
            alarm_description=(
                "A labelling window failed (the job failed or ran out of time, or no model is registered): its "
                "unlabelled photos stay PENDING for the next window. The execution's cause names the job; its "
                f"logs are in {TRAINING_LOG_GROUP}."
            ),
            metric=cloudwatch.MathExpression(
                expression="FILL(failed, 0) + FILL(timedout, 0)",
                using_metrics=using,
                period=period,
                label="labelling windows failed or timed out",
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        return notify(alarm, topic)


__all__ = ["WINDOW_SERVICE_NAME", "LabellingWindow"]
