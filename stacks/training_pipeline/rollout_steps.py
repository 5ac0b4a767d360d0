"""The rollout steps: the approved model goes onto the endpoint the way a `cdk deploy` would put it there.

    CheckEndpoint → EndpointReady → CreateModel → CreateEndpointConfig → [probe_steps.py: the new model answers the
    labeller's request on an endpoint of its own] → UpdateEndpoint (blue/green, automatic rollback on the
    endpoint's alarms) → WaitForRollout ⇄ DescribeRollout → RolloutStatus → RegisterModel

AWS SDK integrations (`CallAwsService`), not the L2 SageMaker tasks: those cannot express an uncompressed S3Prefix
model, the variant's startup timeouts and routing, or a DeploymentConfig. The model and endpoint config are the
CDK endpoint's own (same image, environment, variant, DeploymentConfig) with the new model directory, so a
pipeline rollout and a `cdk deploy` cannot drift apart (`RolloutTarget` fails synth on a field it cannot copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.common.sagemaker_jobs import pass_role_statement, sagemaker_arn
from stacks.serving.inference_endpoint import InferenceEndpoint
from stacks.serving.rollout import RolloutAlarms
from stacks.training_pipeline.names import ROLLOUT_POLL_SECONDS
from stacks.training_pipeline.probe_steps import build_probe

# The ProductionVariant fields a rollout copies from the CDK endpoint config (Python name → API name).
_PASSABLE_VARIANT_FIELDS = {
    "variant_name": "VariantName",
    "instance_type": "InstanceType",
    "initial_instance_count": "InitialInstanceCount",
    "initial_variant_weight": "InitialVariantWeight",
    "container_startup_health_check_timeout_in_seconds": "ContainerStartupHealthCheckTimeoutInSeconds",
    "model_data_download_timeout_in_seconds": "ModelDataDownloadTimeoutInSeconds",
    "volume_size_in_gb": "VolumeSizeInGB",
}


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


def build_rollout(
    scope: Construct,
    *,
    target: RolloutTarget,
    alarms: RolloutAlarms,
    endpoint_name: str,
    name_prefix: str,
    register: tasks.CallAwsService,
    probe_function: lambda_.IFunction,
) -> sfn.IChainable:
    """The chain from CheckEndpoint to `register`, which runs only once the new model passed the probe and
    SageMaker kept the new config."""
    endpoint = target.endpoint
    endpoint_arn = sagemaker_arn(scope, "endpoint", endpoint_name)
    describe_params = {"EndpointName": endpoint_name}

    check = tasks.CallAwsService.jsonata(
        scope,
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
        _fail(
            scope,
            "EndpointMissing",
            "EndpointMissing",
            f'{{% "endpoint {endpoint_name} cannot be described (deploy the stack first); the approved '
            'model stays at " & $training.model_data_uri & ": " & $states.input.Cause %}',
        ),
        errors=["States.ALL"],
    )
    busy = _fail(
        scope,
        "EndpointBusy",
        "EndpointBusy",
        f'{{% "endpoint {endpoint_name} is " & $states.input.EndpointStatus & ", not InService (another '
        'deployment is running?); nothing was changed: start the execution again later" %}',
    )
    create_model = tasks.CallAwsService.jsonata(
        scope,
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
        iam_resources=[sagemaker_arn(scope, "model", f"{name_prefix}-*")],
        additional_iam_statements=[pass_role_statement(endpoint.role)],
        outputs="{% $states.input %}",
    )
    variant = target.production_variant()
    create_config = tasks.CallAwsService.jsonata(
        scope,
        "CreateEndpointConfig",
        comment="The CDK endpoint config's variant (and async inference config) with the new model",
        service="sagemaker",
        action="createEndpointConfig",
        parameters={
            "EndpointConfigName": "{% $training.job_name %}",
            "ProductionVariants": [{**variant, "ModelName": "{% $training.job_name %}"}],
            # endpoint.mode async: the same queue, bucket, key and topics as the stack's endpoint config.
            **({"AsyncInferenceConfig": dict(endpoint.async_inference)} if endpoint.async_inference else {}),
        },
        iam_resources=[sagemaker_arn(scope, "endpoint-config", f"{name_prefix}-*")],
        outputs="{% $states.input %}",
    )
    update = tasks.CallAwsService.jsonata(
        scope,
        "UpdateEndpoint",
        comment="Blue/green: a new fleet, traffic shifted, alarms watched, automatic rollback",
        service="sagemaker",
        action="updateEndpoint",
        parameters={
            "EndpointName": endpoint_name,
            "EndpointConfigName": "{% $training.job_name %}",
            # Keep the instance count autoscaling has reached: the new fleet starts at today's load.
            "RetainAllVariantProperties": True,
            # The endpoint's own DeploymentConfig: a pipeline rollout and a `cdk deploy` behave the same.
            "DeploymentConfig": endpoint.deployment_config,
        },
        iam_resources=[endpoint_arn, sagemaker_arn(scope, "endpoint-config", f"{name_prefix}-*")],
        outputs="{% $states.input %}",
    )
    wait = sfn.Wait.jsonata(
        scope, "WaitForRollout", time=sfn.WaitTime.duration(Duration.seconds(ROLLOUT_POLL_SECONDS))
    )
    poll = tasks.CallAwsService.jsonata(
        scope,
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
    rolled_back = _fail(
        scope,
        "RolledBack",
        "RolledBack",
        '{% "SageMaker rolled the endpoint back to " & $states.input.EndpointConfigName & " (a rollout alarm '
        'fired or the new fleet failed: " & ($exists($states.input.FailureReason) ? '
        "$states.input.FailureReason : "
        '"see the alarms ' + ", ".join(alarms.alarm_names) + '") & "); the model " & $training.model_data_uri '
        '& " is not registered" %}',
    )
    failed = _fail(
        scope,
        "RolloutFailed",
        "RolloutFailed",
        '{% "endpoint ' + endpoint_name + ' ended the rollout as " & $states.input.EndpointStatus & ": " & '
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
        sfn.Choice.jsonata(scope, "RolloutStatus")
        .when(in_progress, wait)
        .when(rolled_out, register)
        .when(back, rolled_back)
        .otherwise(failed)
    )
    for step in (create_model, create_config, update):
        step.add_catch(
            _fail(
                scope,
                f"{step.node.id}Failed",
                "RolloutFailed",
                '{% "' + step.node.id + ' failed; the endpoint is unchanged: " & $states.input.Cause %}',
            ),
            errors=["States.ALL"],
        )
    check.next(
        sfn.Choice.jsonata(scope, "EndpointReady")
        .when(sfn.Condition.jsonata('{% $states.input.EndpointStatus = "InService" %}'), create_model)
        .otherwise(busy)
    )
    probe = build_probe(scope, name_prefix=name_prefix, variant=variant, function=probe_function, then=update)
    create_model.next(create_config).next(probe)
    update.next(wait)
    wait.next(poll).next(status)
    return check


def _fail(scope: Construct, construct_id: str, error: str, cause: str) -> sfn.Fail:
    return sfn.Fail.jsonata(scope, construct_id, error=error, cause=cause)
