"""The training pipeline: Step Functions trains on P5, gates on accuracy, registers the model and rolls it out.

    ReadRequest → ValidateRequest → Train (sagemaker:createTrainingJob.sync, evaluation inside the job)
      → ReadMetrics (metrics.json from the model prefix) → AccuracyGate
      → [rollout: CheckEndpoint → CreateModel → CreateEndpointConfig → UpdateEndpoint (blue/green, auto-rollback
         on alarms) → poll DescribeEndpoint until InService → verify it runs the new config]
      → RegisterModel (ssm:PutParameter of the registry parameter) → Done

Model lifecycle (README "Model lifecycle"): the registry is one SSM String parameter,
`/<name_prefix>/model/current`, holding the S3 prefix of the last approved model. The pipeline creates and
overwrites it; CloudFormation never owns its value. With `training.serve_registered_model` the endpoint's model
URI is a CloudFormation parameter of type `AWS::SSM::Parameter::Value<String>` naming it: CloudFormation
re-reads it on every deploy and the CDK CLI never skips a deploy of a stack with such a parameter, so a later
`cdk deploy` serves the model the pipeline last approved instead of reverting the endpoint. The parameter is
written after a successful rollout only, so a model that SageMaker rolled back never becomes the one a deploy
would serve. An explicit `endpoint.model_data_uri` pins a model: the pipeline then trains, gates and registers,
but does not touch the endpoint.

Why not the L2 `SageMakerCreateTrainingJob`: in aws-cdk-lib 2.275 it cannot express managed spot training,
`CheckpointConfig` or `OutputDataConfig.CompressionType` (all three are needed here), so the training step is a
`CustomState` on the same optimized `.sync` integration, with the IAM the L2 would add, scoped tighter. Likewise
the L2 model/endpoint-config/update-endpoint tasks cannot express an uncompressed S3Prefix model, the variant's
startup timeouts and routing, or a DeploymentConfig, so those steps are AWS SDK integrations (`CallAwsService`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks import constants
from stacks.config import TrainingPipelineConfig
from stacks.config_sections import RESERVED_HYPERPARAMETERS
from stacks.container_images import grant_ecr_pull
from stacks.encrypted_logs import encrypted_log_group
from stacks.inference_endpoint import InferenceEndpoint
from stacks.model_store import ModelStore
from stacks.nag import acknowledge, nag_resource
from stacks.rollout import RolloutAlarms
from stacks.training_asset import ENTRY_POINT, training_code_asset
from stacks.training_image import TrainingImageTable, default_training_images

# --- limits and fixed names ------------------------------------------------------------------------------------

TRAINING_JOB_NAME_MAX = 63  # CreateTrainingJob / CreateModel / CreateEndpointConfig name limit
_NAME_RE = r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"  # SageMaker's name pattern
ROLLOUT_POLL_SECONDS = 60  # DescribeEndpoint cadence while a blue/green deployment runs
STATE_MACHINE_SLACK_SECONDS = 3600  # on top of training + rollout: queueing, model creation, API calls
PIPELINE_LOG_RETENTION = logs.RetentionDays.ONE_YEAR  # runs are rare; keep a year of audit trail
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"  # SageMaker's default; launch.py's default --checkpoint_dir
TRAIN_CHANNEL = "train"  # SM_CHANNEL_TRAIN in launch.py
MODEL_CHANNEL = "model"  # SM_CHANNEL_MODEL in launch.py (optional base weights)
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRAINING_METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
SYNC_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"  # the .sync integration's managed rule
INPUT_KEYS = (
    "dataset_s3_uri",
    "run_name",
    "hyperparameters",
    "instance_count",
    "min_accuracy",
    "base_model_s3_uri",
)
# evaluate.py prints `eval_<name>=<value>` lines; SageMaker turns them into job metrics (console, Describe...).
METRIC_DEFINITIONS = (
    {"Name": "eval_accuracy", "Regex": "eval_accuracy=([0-9.]+)"},
    {"Name": "eval_macro_f1", "Regex": "eval_macro_f1=([0-9.]+)"},
    {"Name": "eval_invalid_answers", "Regex": "eval_invalid_answers=([0-9]+)"},
    {"Name": "train_loss", "Regex": "'loss': '?([0-9.]+(e-?[0-9]+)?)"},
)
_PASSABLE_VARIANT_FIELDS = {
    "variant_name": "VariantName",
    "instance_type": "InstanceType",
    "initial_instance_count": "InitialInstanceCount",
    "initial_variant_weight": "InitialVariantWeight",
    "container_startup_health_check_timeout_in_seconds": "ContainerStartupHealthCheckTimeoutInSeconds",
    "model_data_download_timeout_in_seconds": "ModelDataDownloadTimeoutInSeconds",
    "volume_size_in_gb": "VolumeSizeInGB",
}


# --- the pipeline ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutTarget:
    """What the pipeline needs to reproduce the CloudFormation endpoint with a new model."""

    endpoint: InferenceEndpoint

    def production_variant(self) -> dict[str, Any]:
        """The CDK endpoint config's variant in CreateEndpointConfig's shape (ModelName is set per run).

        Fails synth if the variant uses a field the pipeline does not copy, so the two cannot drift apart.
        """
        config = self.endpoint.endpoint_config
        for name in ("kms_key_id", "data_capture_config", "async_inference_config", "shadow_production_variants"):
            if getattr(config, name, None) is not None:
                raise ValueError(f"the training pipeline cannot reproduce EndpointConfig.{name}: teach it first")
        (variant,) = config.production_variants
        values: dict[str, Any] = dict(variant._values)
        values.pop("model_name")
        rendered: dict[str, Any] = {}
        for name, value in values.items():
            if name == "routing_config":
                rendered["RoutingConfig"] = {"RoutingStrategy": value.routing_strategy}
            elif name in _PASSABLE_VARIANT_FIELDS:
                rendered[_PASSABLE_VARIANT_FIELDS[name]] = value
            else:
                raise ValueError(
                    f"the training pipeline cannot reproduce ProductionVariant.{name}: teach it first"
                )
        return rendered


class TrainingPipeline(Construct):
    """The state machine, its roles, log group and failure alarm. See the module docstring for the flow."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        settings: TrainingPipelineConfig,
        store: ModelStore,
        endpoint_name: str,
        rollout_target: InferenceEndpoint | None,
        model_pinned: bool = False,
        confidence_threshold: float,
        alarm_topic: sns.ITopic | None = None,
        image_table: TrainingImageTable | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.name_prefix = name_prefix
        # The evaluation reports the share of photos production would store as NEEDS_REVIEW at this threshold.
        self.confidence_threshold = confidence_threshold
        self.settings = settings
        self.store = store
        self.endpoint_name = endpoint_name
        self.model_pinned = model_pinned
        self.rollout = RolloutTarget(rollout_target) if rollout_target is not None else None
        self.code = training_code_asset(self, "Code")
        self.image_uri = (image_table or default_training_images()).image_uri(self, settings.image_version)
        self.training_role = self._build_training_role()
        # The endpoint owns its rollback alarms (a `cdk deploy` is watched by them too); the pipeline names them.
        self.alarms: RolloutAlarms | None = rollout_target.rollout_alarms if rollout_target is not None else None
        self.log_group = self._build_log_group()
        self.state_machine = self._build_state_machine()
        self._grant_state_machine()
        self._failure_alarm(alarm_topic)

    # --- helpers --------------------------------------------------------------------------------------------

    @property
    def _bucket_uri(self) -> str:
        return f"s3://{self.store.bucket.bucket_name}/"

    def _arn(self, resource: str, name: str) -> str:
        return Stack.of(self).format_arn(service="sagemaker", resource=resource, resource_name=name)

    # --- roles ------------------------------------------------------------------------------------------------

    def _build_training_role(self) -> iam.Role:
        stack = Stack.of(self)
        bucket = self.store.bucket
        role = iam.Role(
            self,
            "TrainingRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"{self.name_prefix} training jobs: read datasets and code, write models and checkpoints",
        )
        read_prefixes = [constants.DATASETS_PREFIX, constants.BASE_MODELS_PREFIX, constants.CHECKPOINTS_PREFIX]
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{prefix}*") for prefix in read_prefixes],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in read_prefixes]}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[
                    bucket.arn_for_objects(f"{constants.MODELS_PREFIX}*"),
                    bucket.arn_for_objects(f"{constants.CHECKPOINTS_PREFIX}*"),
                ],
            )
        )
        # Checkpoint sync mirrors deletions (save_total_limit) to S3.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:DeleteObject"], resources=[bucket.arn_for_objects(f"{constants.CHECKPOINTS_PREFIX}*")]
            )
        )
        # Reading SSE-KMS inputs and writing SSE-KMS outputs; no kms:ReEncrypt* (grant_encrypt_decrypt's), which
        # would let the role move ciphertext under another key.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"],
                resources=[self.store.data_key.key_arn],
            )
        )
        # The one code archive, by its exact key (Asset.grant_read would grant s3:GetObject* on the whole bucket).
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[
                    stack.format_arn(
                        service="s3",
                        region="",
                        account="",
                        resource=self.code.s3_bucket_name,
                        resource_name=self.code.s3_object_key,
                    )
                ],
            )
        )
        grant_ecr_pull(role, self.image_uri, default_training_images().repository)
        log_group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{TRAINING_LOG_GROUP}:log-stream:{self.name_prefix}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group_arn])
        )
        training_log_group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{TRAINING_LOG_GROUP}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:DescribeLogStreams"], resources=[training_log_group_arn]
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": TRAINING_METRICS_NAMESPACE}},
            )
        )
        policy_statement_ids = [
            nag_resource(self, bucket.arn_for_objects(f"{prefix}*"))
            for prefix in (
                constants.DATASETS_PREFIX,
                constants.BASE_MODELS_PREFIX,
                constants.CHECKPOINTS_PREFIX,
                constants.MODELS_PREFIX,
            )
        ]
        for resource in policy_statement_ids:
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{resource}]",
                "A training job reads a dataset directory and writes a model directory and checkpoint shards "
                "whose file names are only known at run time; access is limited to that one prefix of the "
                "training bucket.",
            )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource-level permissions; "
            "PutMetricData is limited to SageMaker's training namespace by a condition.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, log_group_arn)}]",
            "SageMaker names one log stream per training job, host and algorithm at run time; the grant is "
            "limited to streams of this app's jobs (the job name prefix) in SageMaker's training log group.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, training_log_group_arn)}]",
            "SageMaker creates its shared training log group on first use and describes its streams; the grant "
            "names exactly that log group.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "Writing SSE-KMS objects needs GenerateDataKey and its variants (WithoutPlaintext for multipart "
            "checkpoint uploads) on the one app key.",
        )
        return role

    def _build_log_group(self) -> logs.LogGroup:
        # The key policy admits CloudWatch Logs for this one log group only (stacks/encrypted_logs.py).
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

    # --- the definition -------------------------------------------------------------------------------------

    def _fail(self, construct_id: str, error: str, cause: str) -> sfn.Fail:
        return sfn.Fail.jsonata(self, construct_id, error=error, cause=cause)

    def _request_expression(self) -> str:
        """JSONata: the execution input with defaults applied (validated by ValidateRequest)."""
        s = self.settings
        defaults = {name: _hp(value) for name, value in sorted(s.hyperparameters.items())}
        fixed = {"evaluate": "true", "confidence_threshold": repr(self.confidence_threshold)}
        base_default = f'"{self._bucket_uri}{s.base_model_prefix}"' if s.base_model_prefix else "null"
        return (
            "{% ("
            '$in := $type($states.input) = "object" ? $states.input : {}; '
            "$given := function($v) { $exists($v) and $v != null }; "
            "$stamp := $fromMillis($toMillis($states.context.Execution.StartTime), "
            '"[Y0001][M01][D01]-[H01][m01][s01]"); '
            "$run := $given($in.run_name) ? $in.run_name : $stamp; "
            '$hp := $given($in.hyperparameters) and $type($in.hyperparameters) = "object" ? $in.hyperparameters '
            ": {}; "
            "{"
            '"run_name": $run, '
            f'"job_name": "{self.name_prefix}-" & $string($run), '
            '"dataset_s3_uri": $in.dataset_s3_uri, '
            f'"base_model_s3_uri": $given($in.base_model_s3_uri) ? $in.base_model_s3_uri : {base_default}, '
            f'"instance_count": $given($in.instance_count) ? $in.instance_count : {s.instance_count}, '
            f'"min_accuracy": $given($in.min_accuracy) ? $in.min_accuracy : {s.min_accuracy!r}, '
            f'"hyperparameters": $merge([{json.dumps(defaults)}, $merge($each($hp, function($v, $k) '
            f"{{ {{$k: $string($v)}} }})), {json.dumps(fixed)}])"
            "}"
            ") %}"
        )

    def _problems_expression(self) -> str:
        """JSONata: a list of human-readable problems with the request (empty: valid)."""
        s = self.settings
        bucket = self._bucket_uri
        reserved = json.dumps(list(RESERVED_HYPERPARAMETERS))
        allowed = json.dumps(list(INPUT_KEYS))
        datasets = f"{bucket}{constants.DATASETS_PREFIX}"
        base_models = f"{bucket}{constants.BASE_MODELS_PREFIX}"
        return (
            "{% ("
            "$in := $states.input; $r := $request; "
            '$under := function($uri, $prefix) { $type($uri) = "string" and $substring($uri, 0, '
            "$length($prefix)) = $prefix "
            'and $length($uri) > $length($prefix) and $substring($uri, -1) = "/" }; '
            '$hp := $type($in) = "object" ? $in.hyperparameters : undefined; '
            "["
            '$type($in) != "object" ? "the execution input must be a JSON object", '
            f'($type($in) = "object" and $count([$keys($in)[$not($ in {allowed})]]) > 0) ? '
            f'"unknown input key(s): " & $join([$keys($in)[$not($ in {allowed})]], ", ") & " (accepted: '
            f'{", ".join(INPUT_KEYS)})", '
            f'$not($under($r.dataset_s3_uri, "{datasets}")) ? "dataset_s3_uri must be a folder URI ending in / '
            "under "
            f'{datasets} (the DatasetDict written by training_job.build_dataset), got " & '
            "$string($r.dataset_s3_uri), "
            f'($type($r.run_name) != "string" or $not($contains($r.run_name, /{_NAME_RE}/))) ? "run_name must be '
            'letters, digits and single hyphens, starting and ending with a letter or digit, got " & '
            "$string($r.run_name), "
            f'($type($r.run_name) = "string" and $length($r.job_name) > {TRAINING_JOB_NAME_MAX}) ? "run_name is '
            "too long: "
            f"the training job name {self.name_prefix}-<run_name> must be at most {TRAINING_JOB_NAME_MAX} "
            'characters", '
            f'($r.base_model_s3_uri != null and $not($under($r.base_model_s3_uri, "{base_models}"))) ? '
            '"base_model_s3_uri '
            f'must be a folder URI ending in / under {base_models}, got " & $string($r.base_model_s3_uri), '
            '($type($r.instance_count) != "number" or $r.instance_count != $floor($r.instance_count) or '
            "$r.instance_count < 1 "
            f'or $r.instance_count > {s.max_instance_count}) ? "instance_count must be an integer '
            f"1..{s.max_instance_count} "
            '(training.max_instance_count), got " & $string($r.instance_count), '
            f'($type($r.min_accuracy) != "number" or $r.min_accuracy < {s.min_accuracy!r} or $r.min_accuracy > '
            "1) ? "
            f'"min_accuracy may only raise the configured bar {s.min_accuracy!r} (up to 1), got " & '
            "$string($r.min_accuracy), "
            '($exists($hp) and $hp != null and $type($hp) != "object") ? "hyperparameters must be an object of '
            'name: value", '
            f'($type($hp) = "object" and $count([$keys($hp)[$ in {reserved} or $substring($, 0, 10) = '
            '"sagemaker_"]]) > 0) ? '
            f'"hyperparameters " & $join([$keys($hp)[$ in {reserved} or $substring($, 0, 10) = "sagemaker_"]], '
            '", ") '
            '& " are set by the pipeline and cannot be overridden", '
            '($type($hp) = "object" and $count([$keys($hp)[$not($type($lookup($hp, $)) in ["string", "number", '
            '"boolean"])]]) > 0) ? '
            '"hyperparameter values must be strings, numbers or booleans: " & '
            '$join([$keys($hp)[$not($type($lookup($hp, $)) in ["string", "number", "boolean"])]], ", ")'
            "]"
            ") %}"
        )

    def _training_arguments(self) -> dict[str, Any]:
        s = self.settings
        bucket = self._bucket_uri
        channel = (
            '{"ChannelName": "%s", "InputMode": "File", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", '
            '"S3DataDistributionType": "FullyReplicated", "S3Uri": %s}}}'
        )
        stopping: dict[str, Any] = {"MaxRuntimeInSeconds": s.max_runtime_seconds}
        if s.use_spot:
            stopping["MaxWaitTimeInSeconds"] = s.effective_max_wait_seconds
        return {
            "TrainingJobName": "{% $request.job_name %}",
            "RoleArn": self.training_role.role_arn,
            "AlgorithmSpecification": {
                "TrainingImage": self.image_uri,
                "TrainingInputMode": "File",
                "MetricDefinitions": [dict(m) for m in METRIC_DEFINITIONS],
            },
            "HyperParameters": "{% $merge([$request.hyperparameters, "
            + json.dumps({"sagemaker_program": ENTRY_POINT})
            + ', {"sagemaker_submit_directory": "'
            + self.code.s3_object_url
            + '"}]) %}',
            "InputDataConfig": "{% $append(["
            + channel % (TRAIN_CHANNEL, "$request.dataset_s3_uri")
            + "], $request.base_model_s3_uri != null ? ["
            + channel % (MODEL_CHANNEL, "$request.base_model_s3_uri")
            + "] : []) %}",
            "OutputDataConfig": {
                "S3OutputPath": f"{bucket}{constants.MODELS_PREFIX}",
                "KmsKeyId": self.store.data_key.key_arn,
                # An uncompressed model directory is servable as is (S3Prefix model data): no 15 GB tarball.
                "CompressionType": "NONE",
            },
            "ResourceConfig": {
                "InstanceType": s.instance_type,
                "InstanceCount": "{% $request.instance_count %}",
                "VolumeSizeInGB": s.volume_size_gb,
                # P5 has local NVMe storage, which SageMaker rejects a VolumeKmsKeyId for (hardware-encrypted).
            },
            "StoppingCondition": stopping,
            "EnableManagedSpotTraining": s.use_spot,
            # Multi-node ZeRO-3 exchanges parameter shards and gradients between hosts on every step.
            "EnableInterContainerTrafficEncryption": True,
            "CheckpointConfig": {
                "S3Uri": "{% '" + bucket + constants.CHECKPOINTS_PREFIX + "' & $request.job_name & '/' %}",
                "LocalPath": CHECKPOINT_LOCAL_PATH,
            },
        }

    def _build_train_state(self) -> sfn.CustomState:
        resource = f"arn:{Aws.PARTITION}:states:::sagemaker:createTrainingJob.sync"
        train = sfn.CustomState(
            self,
            "Train",
            state_json={
                "Type": "Task",
                "Comment": "Train with accelerate + DeepSpeed ZeRO-3 on every GPU, then evaluate (metrics.json)",
                "Resource": resource,
                "Arguments": self._training_arguments(),
                "Assign": {
                    "training": "{% ($uri := $states.result.ModelArtifacts.S3ModelArtifacts; {"
                    '"job_name": $states.result.TrainingJobName, '
                    '"model_data_uri": $substring($uri, -1) = "/" ? $uri : $uri & "/", '
                    '"billable_seconds": $states.result.BillableTimeInSeconds}) %}'
                },
                "Output": "{% $states.input %}",
            },
        )
        return train

    def _build_definition(self) -> sfn.IChainable:
        read_request = sfn.Pass.jsonata(
            self,
            "ReadRequest",
            comment="Apply defaults to the execution input",
            assign={"request": self._request_expression()},
        )
        validate = sfn.Pass.jsonata(
            self,
            "ValidateRequest",
            comment="Collect every problem with the input",
            assign={"problems": self._problems_expression()},
        )
        invalid = self._fail(
            "InvalidRequest", "InvalidRequest", '{% "Nothing was started: " & $join($problems, "; ") %}'
        )
        train = self._build_train_state()
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
                '"accuracy": $m.accuracy, "macro_f1": $m.macro_f1, "invalid_answers": $m.invalid_answers}) %}'
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
        after_gate: sfn.IChainable = self._build_rollout(register) if self.rollout else register
        request_valid = (
            sfn.Choice.jsonata(self, "RequestValid", comment="Fail before any cost if the input is wrong")
            .when(sfn.Condition.jsonata("{% $count($problems) > 0 %}"), invalid)
            .otherwise(train)
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

    def _build_rollout(self, register: tasks.CallAwsService) -> sfn.IChainable:
        assert self.rollout is not None and self.alarms is not None
        endpoint = self.rollout.endpoint
        endpoint_arn = self._arn("endpoint", self.endpoint_name)
        describe_params = {"EndpointName": self.endpoint_name}

        check = tasks.CallAwsService.jsonata(
            self,
            "CheckEndpoint",
            service="sagemaker",
            action="describeEndpoint",
            parameters=describe_params,
            iam_resources=[endpoint_arn],
            outputs="{% $states.result %}",
            assign={"previous_config": "{% $states.result.EndpointConfigName %}"},
        )
        check.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5), backoff_rate=2)
        check.add_catch(
            self._fail(
                "EndpointMissing",
                "EndpointMissing",
                f'{{% "endpoint {self.endpoint_name} cannot be described (deploy the stack first); the approved '
                'model stays at " & $training.model_data_uri & ": " & $states.input.Cause %}',
            ),
            errors=["States.ALL"],
        )
        busy = self._fail(
            "EndpointBusy",
            "EndpointBusy",
            f'{{% "endpoint {self.endpoint_name} is " & $states.input.EndpointStatus & ", not InService (another '
            'deployment is running?); nothing was changed: start the execution again later" %}',
        )
        create_model = tasks.CallAwsService.jsonata(
            self,
            "CreateModel",
            service="sagemaker",
            action="createModel",
            parameters={
                "ModelName": "{% $training.job_name %}",
                "ExecutionRoleArn": endpoint.role.role_arn,
                "EnableNetworkIsolation": True,
                "PrimaryContainer": {
                    "Image": endpoint.image_uri,
                    "Mode": "SingleModel",
                    "Environment": dict(endpoint.serving_environment),
                    "ModelDataSource": {
                        "S3DataSource": {
                            "S3Uri": "{% $training.model_data_uri %}",
                            "S3DataType": "S3Prefix",
                            "CompressionType": "None",
                        }
                    },
                },
            },
            iam_resources=[self._arn("model", f"{self.name_prefix}-*")],
            additional_iam_statements=[self._pass_role_statement(endpoint.role)],
            outputs="{% $states.input %}",
        )
        variant = self.rollout.production_variant()
        create_config = tasks.CallAwsService.jsonata(
            self,
            "CreateEndpointConfig",
            comment="The CDK endpoint config's variant with the new model",
            service="sagemaker",
            action="createEndpointConfig",
            parameters={
                "EndpointConfigName": "{% $training.job_name %}",
                "ProductionVariants": [{**variant, "ModelName": "{% $training.job_name %}"}],
            },
            iam_resources=[self._arn("endpoint-config", f"{self.name_prefix}-*")],
            outputs="{% $states.input %}",
        )
        update = tasks.CallAwsService.jsonata(
            self,
            "UpdateEndpoint",
            comment="Blue/green: a new fleet, traffic shifted, alarms watched, automatic rollback",
            service="sagemaker",
            action="updateEndpoint",
            parameters={
                "EndpointName": self.endpoint_name,
                "EndpointConfigName": "{% $training.job_name %}",
                # Keep the instance count autoscaling has reached: the new fleet starts at today's load.
                "RetainAllVariantProperties": True,
                # The endpoint's own DeploymentConfig: a pipeline rollout and a `cdk deploy` behave the same.
                "DeploymentConfig": endpoint.deployment_config,
            },
            iam_resources=[endpoint_arn, self._arn("endpoint-config", f"{self.name_prefix}-*")],
            outputs="{% $states.input %}",
        )
        wait = sfn.Wait.jsonata(
            self, "WaitForRollout", time=sfn.WaitTime.duration(Duration.seconds(ROLLOUT_POLL_SECONDS))
        )
        poll = tasks.CallAwsService.jsonata(
            self,
            "DescribeRollout",
            service="sagemaker",
            action="describeEndpoint",
            parameters=describe_params,
            iam_resources=[endpoint_arn],
            outputs=(
                "{% {'EndpointStatus': $states.result.EndpointStatus, 'EndpointConfigName': "
                "$states.result.EndpointConfigName, 'FailureReason': $states.result.FailureReason} %}"
            ),
        )
        poll.add_retry(errors=["States.ALL"], max_attempts=5, interval=Duration.seconds(10), backoff_rate=2)
        rolled_back = self._fail(
            "RolledBack",
            "RolledBack",
            '{% "SageMaker rolled the endpoint back to " & $states.input.EndpointConfigName & " (a rollout alarm '
            'fired or the new fleet failed: " & ($exists($states.input.FailureReason) ? '
            "$states.input.FailureReason : "
            '"see the alarms '
            + ", ".join(self.alarms.alarm_names)
            + '") & "); the model " & $training.model_data_uri '
            '& " is not registered" %}',
        )
        failed = self._fail(
            "RolloutFailed",
            "RolloutFailed",
            '{% "endpoint '
            + self.endpoint_name
            + ' ended the rollout as " & $states.input.EndpointStatus & ": " & '
            '($exists($states.input.FailureReason) ? $states.input.FailureReason : "no reason given") %}',
        )
        in_progress = sfn.Condition.jsonata(
            '{% $states.input.EndpointStatus in ["Updating", "SystemUpdating", "RollingBack", "Creating"] %}'
        )
        rolled_out = sfn.Condition.jsonata(
            '{% $states.input.EndpointStatus = "InService" and $states.input.EndpointConfigName = '
            "$training.job_name %}"
        )
        back = sfn.Condition.jsonata('{% $states.input.EndpointStatus = "InService" %}')
        status = (
            sfn.Choice.jsonata(self, "RolloutStatus")
            .when(in_progress, wait)
            .when(rolled_out, register)
            .when(back, rolled_back)
            .otherwise(failed)
        )
        for step in (create_model, create_config, update):
            step.add_catch(
                self._fail(
                    f"{step.node.id}Failed",
                    "RolloutFailed",
                    '{% "' + step.node.id + ' failed; the endpoint is unchanged: " & $states.input.Cause %}',
                ),
                errors=["States.ALL"],
            )
        check.next(
            sfn.Choice.jsonata(self, "EndpointReady")
            .when(sfn.Condition.jsonata('{% $states.input.EndpointStatus = "InService" %}'), create_model)
            .otherwise(busy)
        )
        create_model.next(create_config).next(update).next(wait)
        wait.next(poll).next(status)
        return check

    def _pass_role_statement(self, role: iam.IRole) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=[role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )

    def _build_state_machine(self) -> sfn.StateMachine:
        s = self.settings
        training_seconds = s.effective_max_wait_seconds or s.max_runtime_seconds
        rollout_seconds = self.rollout.endpoint.rollout_policy.timeout_seconds if self.rollout else 0
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

    def _grant_state_machine(self) -> None:
        stack = Stack.of(self)
        role = self.state_machine.role
        models_arn = self.store.bucket.arn_for_objects(f"{constants.MODELS_PREFIX}*")
        job_arn = self._arn("training-job", f"{self.name_prefix}-*")
        role.add_to_principal_policy(
            iam.PolicyStatement(
                # .sync tags the job it starts (MANAGED_BY_AWS) and reads the tags back: without AddTags every
                # run fails (aws-cdk issue 32294, fixed in the L2 task by PR 32536). AWS's documented policy grants
                # ListTags on "*"; this app's jobs are the only ones it needs.
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=[job_arn],
            )
        )
        role.add_to_principal_policy(self._pass_role_statement(self.training_role))
        rule_arn = stack.format_arn(service="events", resource="rule", resource_name=SYNC_RULE)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"], resources=[rule_arn]
            )
        )
        self.store.data_key.grant_decrypt(role)  # metrics.json is SSE-KMS
        if self.alarms is not None:
            # UpdateEndpoint's AutoRollbackConfiguration names these alarms; the caller must be able to read them.
            self.alarms.grant_describe(role)
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "CDK adds the CloudWatch Logs delivery and X-Ray actions that state machine logging and tracing need; "
            "none of them supports resource-level permissions.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, job_arn)}]",
            "Each execution creates a training job with a new name; the grant is limited to this app's job name "
            "prefix.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, models_arn)}]",
            "The pipeline reads evaluation/metrics.json of the model a run just trained; models live under one "
            "prefix of the training bucket with run-specific names.",
        )
        if self.rollout:
            for resource in (
                self._arn("model", f"{self.name_prefix}-*"),
                self._arn("endpoint-config", f"{self.name_prefix}-*"),
            ):
                acknowledge(
                    role,
                    f"AwsSolutions-IAM5[Resource::{nag_resource(self, resource)}]",
                    "Each rollout creates a model and an endpoint config named after its training job; the "
                    "grant is "
                    "limited to this app's name prefix.",
                )

    def _failure_alarm(self, alarm_topic: sns.ITopic | None) -> None:
        alarm = cloudwatch.Alarm(
            self,
            "FailedExecutions",
            alarm_description=f"{self.name_prefix}: a training pipeline execution failed (see its Cause)",
            metric=self.state_machine.metric_failed(period=Duration.minutes(5), statistic="Sum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if alarm_topic is not None:
            action = cloudwatch_actions.SnsAction(alarm_topic)
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
        self.failure_alarm: cloudwatch.Alarm = alarm


def _hp(value: Any) -> str:
    """SageMaker hyper-parameters are strings; the toolkit passes them as `--name value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = ["RolloutAlarms", "TrainingPipeline", "TrainingPipelineConfig"]
