"""The TrainingPipeline construct: the state machine (definition, log group, encryption) and its failure alarm.

    ReadRequest → ValidateRequest → RequestValid → [ReadServedModel] → Train → ReadMetrics → AccuracyGate
      → [ServedModelGate → rollout_steps.py, when the endpoint serves the registry, with probe_steps.py's probe
         before UpdateEndpoint] → RegisterModel → Done

ReadServedModel and ServedModelGate (served_gate.py) refuse a fine-tune that is not better than the served model.

The request expressions are request.py's (JSONata files), the Train state train_step.py's, the IAM roles.py's.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.common import constants
from stacks.common.encrypted_logs import encrypted_log_group
from stacks.common.training_image import TrainingImageTable, default_training_images
from stacks.config import TrainingPipelineConfig
from stacks.monitoring.alarm_topic import alarm_name, notify
from stacks.serving.inference_endpoint import InferenceEndpoint
from stacks.serving.rollout import RolloutAlarms
from stacks.storage.model_store import ModelStore
from stacks.training_pipeline.names import PIPELINE_LOG_RETENTION, STATE_MACHINE_SLACK_SECONDS
from stacks.training_pipeline.probe_steps import (
    acknowledge_probe_invoke,
    build_probe_function,
    probe_endpoint_name,
    probe_seconds,
)
from stacks.training_pipeline.request import problems_expression, request_expression
from stacks.training_pipeline.roles import build_training_role, grant_state_machine
from stacks.training_pipeline.rollout_steps import RolloutTarget, build_rollout
from stacks.training_pipeline.served_gate import METRICS_FIELDS, build_read_served_model, build_served_gate
from stacks.training_pipeline.train_step import build_train_state
from stacks.training_pipeline.training_asset import training_code_asset


class TrainingPipeline(Construct):
    """The state machine, its roles, log group and failure alarm. See the module docstring for the flow."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        config: TrainingPipelineConfig,
        store: ModelStore,
        endpoint_name: str,
        rollout_target: InferenceEndpoint | None,
        # The evaluation reports the share of photos production would store as NEEDS_REVIEW at this threshold.
        confidence_threshold: float,
        model_pinned: bool = False,
        alarm_topic: sns.ITopic | None = None,
        image_table: TrainingImageTable | None = None,
        probe_code: lambda_.Code | None = None,
        taxonomy_file: str = "classification/taxonomy.json",
    ) -> None:
        # probe_code: the labeller's code asset, whose probe_handler the rollout runs before traffic shifts
        # (probe_steps.py); taxonomy_file: its TAXONOMY_FILE. Needed only with a rollout target.
        super().__init__(scope, construct_id)
        self.name_prefix = name_prefix
        self.confidence_threshold = confidence_threshold
        self.config = config
        self.store = store
        self.endpoint_name = endpoint_name
        self.model_pinned = model_pinned
        self.rollout = RolloutTarget(rollout_target) if rollout_target is not None else None
        self.probe_function: lambda_.Function | None = None
        if rollout_target is not None:
            if probe_code is None:
                raise ValueError("a training pipeline that rolls out needs probe_code (the labeller's code asset)")
            self.probe_function = build_probe_function(
                self,
                name_prefix=name_prefix,
                code=probe_code,
                data_key=store.data_key,
                taxonomy_file=taxonomy_file,
            )
            # The probe endpoint runs the same model, and so the same role: its containers log there.
            rollout_target.grant_container_logs(probe_endpoint_name(name_prefix))
        self.code = training_code_asset(self, "Code")
        self.image_uri = (image_table or default_training_images()).image_uri(self, config.image_version)
        self.training_role = build_training_role(
            self, name_prefix=name_prefix, store=store, code=self.code, image_uri=self.image_uri
        )
        # The endpoint owns its rollback alarms (a `cdk deploy` is watched by them too); the pipeline names them.
        self.alarms: RolloutAlarms | None = rollout_target.rollout_alarms if rollout_target is not None else None
        self.log_group = self._build_log_group()
        self.state_machine = self._build_state_machine()
        grant_state_machine(
            self,
            self.state_machine.role,
            name_prefix=name_prefix,
            store=store,
            training_role=self.training_role,
            alarms=self.alarms,
            rolls_out=self.rollout is not None,
        )
        if self.probe_function is not None:
            acknowledge_probe_invoke(self.state_machine.role, self.probe_function)
        self._failure_alarm(alarm_topic)

    # --- helpers --------------------------------------------------------------------------------------------

    @property
    def _bucket_uri(self) -> str:
        return f"s3://{self.store.bucket.bucket_name}/"

    def _fail(self, construct_id: str, error: str, cause: str) -> sfn.Fail:
        return sfn.Fail.jsonata(self, construct_id, error=error, cause=cause)

    # --- resources ------------------------------------------------------------------------------------------

    def _build_log_group(self) -> logs.LogGroup:
        # The key policy admits CloudWatch Logs for this one log group only (stacks/common/encrypted_logs.py).
        return encrypted_log_group(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{self.name_prefix}-training",
            key=self.store.data_key,
            retention=PIPELINE_LOG_RETENTION,
            # Deleted with the stack: a retained log group keeps its fixed name (the key policy names it), so the
            # next deploy after `cdk destroy` would fail with "already exists".
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _build_state_machine(self) -> sfn.StateMachine:
        s = self.config
        training_seconds = s.effective_max_wait_seconds or s.max_runtime_seconds
        rollout_seconds = 0
        if self.rollout:
            endpoint = self.rollout.endpoint.config
            rollout_seconds = self.rollout.endpoint.rollout_policy.timeout_seconds + probe_seconds(
                endpoint.model_data_download_timeout_seconds, endpoint.container_startup_timeout_seconds
            )
        definition = self._build_definition()
        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=f"{self.name_prefix}-training",
            query_language=sfn.QueryLanguage.JSONATA,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.seconds(training_seconds + rollout_seconds + STATE_MACHINE_SLACK_SECONDS),
            tracing_enabled=True,
            # ALL: a run happens a few times a month and every state transition is worth keeping for audit; the
            # execution data holds URIs and metrics, no photos or secrets.
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            encryption_configuration=sfn.CustomerManagedEncryptionConfiguration(self.store.data_key),
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _failure_alarm(self, alarm_topic: sns.ITopic | None) -> None:
        alarm = cloudwatch.Alarm(
            self,
            "FailedExecutions",
            alarm_name=alarm_name(self.name_prefix, "training-failed"),
            alarm_description=f"{self.name_prefix}: a training pipeline execution failed (see its Cause)",
            metric=self.state_machine.metric_failed(period=Duration.minutes(5), statistic="Sum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if alarm_topic is not None:
            notify(alarm, alarm_topic)
        self.failure_alarm: cloudwatch.Alarm = alarm

    # --- the definition -------------------------------------------------------------------------------------

    def _build_definition(self) -> sfn.IChainable:
        read_request = sfn.Pass.jsonata(
            self,
            "ReadRequest",
            comment="Apply defaults to the execution input",
            assign={
                "request": request_expression(
                    self.config,
                    name_prefix=self.name_prefix,
                    bucket_uri=self._bucket_uri,
                    confidence_threshold=self.confidence_threshold,
                )
            },
        )
        validate = sfn.Pass.jsonata(
            self,
            "ValidateRequest",
            comment="Collect every problem with the input",
            assign={
                "problems": problems_expression(
                    self.config, name_prefix=self.name_prefix, bucket_uri=self._bucket_uri
                )
            },
        )
        invalid = self._fail(
            "InvalidRequest", "InvalidRequest", '{% "Nothing was started: " & $join($problems, "; ") %}'
        )
        train = build_train_state(
            self,
            self.config,
            bucket_uri=self._bucket_uri,
            training_role=self.training_role,
            image_uri=self.image_uri,
            code=self.code,
            data_key=self.store.data_key,
            served_channel=self.rollout is not None,
        )
        train.add_catch(
            self._fail(
                "TrainingFailed",
                "TrainingFailed",
                '{% "training job " & $request.job_name & " did not complete: " & $states.input.Cause %}',
            ),
            errors=["States.ALL"],
        )
        read_metrics = tasks.CallAwsService.jsonata(
            self,
            "ReadMetrics",
            comment="metrics.json written by training_job/evaluate.py inside the model directory",
            service="s3",
            action="getObject",
            parameters={
                "Bucket": self.store.bucket.bucket_name,
                "Key": "{% $substringAfter($training.model_data_uri, '"
                + self._bucket_uri
                + "') & 'evaluation/metrics.json' %}",
            },
            iam_resources=[self.store.bucket.arn_for_objects(f"{constants.MODELS_PREFIX}*")],
            assign={
                "metrics": "{% ($m := $parse($states.result.Body); {"
                '"accuracy": $m.accuracy, "macro_f1": $m.macro_f1, "invalid_answers": $m.invalid_answers'
                + (", " + METRICS_FIELDS if self.rollout else "")
                + "}) %}"
            },
            outputs="{% $states.input %}",
        )
        read_metrics.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5), backoff_rate=2)
        read_metrics.add_catch(
            self._fail(
                "NoEvaluation",
                "NoEvaluation",
                '{% "no readable evaluation/metrics.json under " & $training.model_data_uri & " (did '
                "evaluate.py run "
                'and finish? see the training job log): " & $states.input.Cause %}',
            ),
            errors=["States.ALL"],
        )
        below_bar = self._fail(
            "BelowAccuracyBar",
            "BelowAccuracyBar",
            '{% "validation accuracy " & $string($metrics.accuracy) & " is below the bar " & '
            '$string($request.min_accuracy) & "; the model stays at " & $training.model_data_uri & " and is not '
            'registered or deployed" %}',
        )
        gate = sfn.Choice.jsonata(self, "AccuracyGate", comment="Continue only if accuracy clears the bar")
        passes = sfn.Condition.jsonata(
            '{% $type($metrics.accuracy) = "number" and $metrics.accuracy >= $request.min_accuracy %}'
        )
        register = self._build_register_state()
        done = sfn.Succeed.jsonata(
            self,
            "Done",
            outputs={
                "run_name": "{% $request.run_name %}",
                "training_job": "{% $training.job_name %}",
                "model_data_uri": "{% $training.model_data_uri %}",
                "accuracy": "{% $metrics.accuracy %}",
                "macro_f1": "{% $metrics.macro_f1 %}",
                "registry_parameter": self.store.parameter_name,
                "rolled_out_to": self.endpoint_name if self.rollout else None,
                "next_step": self._next_step(),
            },
        )
        register.next(done)
        after_gate: sfn.IChainable = register
        first_cost: sfn.IChainable = train
        if self.rollout:
            after_gate = build_served_gate(self, rollout=self._rollout(register))
            first_cost = build_read_served_model(self, store=self.store, train=train)
        request_valid = (
            sfn.Choice.jsonata(self, "RequestValid", comment="Fail before any cost if the input is wrong")
            .when(sfn.Condition.jsonata("{% $count($problems) > 0 %}"), invalid)
            .otherwise(first_cost)
        )
        read_request.next(validate).next(request_valid)
        train.next(read_metrics).next(gate.when(passes, after_gate).otherwise(below_bar))
        return read_request

    def _next_step(self) -> str:
        if self.rollout:
            return "none: the endpoint serves this model, and every cdk deploy reads it from the registry"
        if self.model_pinned:
            return (
                "endpoint.model_data_uri pins the served model: clear it (and set "
                "training.serve_registered_model) "
                "and cdk deploy to serve this one"
            )
        return "cdk deploy -c photo_labeler.training.serve_registered_model=true to create the endpoint with it"

    def _build_register_state(self) -> tasks.CallAwsService:
        description = (
            '{% $substring("run " & $request.run_name & ": accuracy " & $string($metrics.accuracy) & ", '
            'macro-F1 " & '
            '$string($metrics.macro_f1) & ", invalid answers " & $string($metrics.invalid_answers) & ", job " & '
            '$training.job_name & ", execution " & $states.context.Execution.Name, 0, 1024) %}'
        )
        register = tasks.CallAwsService.jsonata(
            self,
            "RegisterModel",
            comment="The registry: a deploy of the endpoint reads this parameter (never a literal URI)",
            service="ssm",
            action="putParameter",
            parameters={
                "Name": self.store.parameter_name,
                "Value": "{% $training.model_data_uri %}",
                "Type": "String",
                "Overwrite": True,
                "Tier": "Standard",
                "Description": description,
            },
            iam_resources=[self.store.parameter_arn],
            outputs="{% $states.input %}",
        )
        # A failed PutParameter wrote no version, so a retry cannot register the model twice.
        register.add_retry(errors=["States.ALL"], max_attempts=4, interval=Duration.seconds(5), backoff_rate=2)
        return register

    def _rollout(self, register: tasks.CallAwsService) -> sfn.IChainable:
        assert self.rollout is not None and self.alarms is not None and self.probe_function is not None
        return build_rollout(
            self,
            target=self.rollout,
            alarms=self.alarms,
            endpoint_name=self.endpoint_name,
            name_prefix=self.name_prefix,
            register=register,
            probe_function=self.probe_function,
        )
