"""The probe before traffic shifts: the new model answers the labeller's exact request on an endpoint of its own.

    CreateProbeConfig → CreateProbeEndpoint → WaitForProbe ⇄ DescribeProbe → ProbeReady → ProbeNewModel (Lambda:
    lambda/probe_handler.py) → DeleteProbeEndpoint → <the rollout's UpdateEndpoint>
    any failure → DeleteProbeAfterFailure → ProbeFailed: UpdateEndpoint never ran, the old model keeps serving

vLLM ignores request fields it does not know: a serving image that lost the choice constraint or logprobs answers
free text with no error, which neither the accuracy gate (it ran in the training image) nor the rollback alarms
(5xx, latency) can see. SageMaker offers no hook between a blue/green deployment's new fleet and its first request
(deployment guardrails watch alarms only), so the model gets a short-lived real-time endpoint first: one instance
of the production variant's type, never async (the probe waits for its answers), named `<name_prefix>-probe` so
every grant names one exact ARN. A probe endpoint left behind by a stopped execution makes the next
CreateProbeEndpoint fail; that path deletes it, so the run after the next starts clean. Cost: one instance for the
time the model takes to load and answer (~10-20 minutes on ml.g5.xlarge) per rollout.

Self-contained: `build_probe` returns the chain's first state and continues with the state it is given, so another
gate (issue 20's "must beat the served model") can sit before or after it.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from classification.labeller_environment import ProbeEnvironment
from stacks.common.encrypted_logs import encrypted_log_group
from stacks.common.lambda_bundling import ARCHITECTURE, RUNTIME
from stacks.common.lambda_role import lambda_role
from stacks.common.nag import acknowledge, nag_resource
from stacks.common.sagemaker_jobs import sagemaker_arn
from stacks.training_pipeline.names import TRAINING_JOB_NAME_MAX

PROBE_HANDLER = "probe_handler.lambda_handler"
PROBE_SERVICE_NAME = "photo-labeler-probe"  # its log lines' `service`
PROBE_POLL_SECONDS = 60  # DescribeEndpoint cadence while the probe endpoint loads the model
PROBE_FUNCTION_TIMEOUT_SECONDS = 300  # two requests of <= 60 s each, two attempts apiece (ENDPOINT_CLIENT_CONFIG)
PROBE_FUNCTION_MEMORY_MB = 512  # one generated photo through Pillow
PROBE_CONFIG_SUFFIX = "-probe"
PROBE_SLACK_SECONDS = 900  # on top of the model's download and startup: CreateEndpoint, the two requests, deletion


def probe_endpoint_name(name_prefix: str) -> str:
    return f"{name_prefix}{PROBE_CONFIG_SUFFIX}"


def probe_seconds(download_timeout_seconds: int, startup_timeout_seconds: int) -> int:
    """The most a probe can take: SageMaker's own limits on loading the model, plus the requests and cleanup."""
    return download_timeout_seconds + startup_timeout_seconds + PROBE_SLACK_SECONDS


def build_probe_function(
    scope: Construct, *, name_prefix: str, code: lambda_.Code, data_key: kms.IKey, taxonomy_file: str
) -> lambda_.Function:
    """The Lambda that sends the probe's two requests: it may invoke the probe endpoint and nothing else."""
    log_group = encrypted_log_group(
        scope,
        "ProbeLogs",
        log_group_name=f"/{name_prefix}/lambda/rollout-probe",
        key=data_key,
        retention=logs.RetentionDays.ONE_YEAR,  # one run per rollout: the audit trail of what each model answered
        removal_policy=RemovalPolicy.DESTROY,
    )
    role = lambda_role(
        scope,
        "ProbeRole",
        description="Rollout probe: invoke the probe endpoint, write its own logs",
        log_group=log_group,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["sagemaker:InvokeEndpoint"],
            resources=[sagemaker_arn(scope, "endpoint", probe_endpoint_name(name_prefix))],
        )
    )
    function = lambda_.Function(
        scope,
        "ProbeFunction",
        description="Rollout probe: the new model answers the labeller's request before traffic shifts to it",
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        handler=PROBE_HANDLER,
        code=code,
        role=role,
        timeout=Duration.seconds(PROBE_FUNCTION_TIMEOUT_SECONDS),
        memory_size=PROBE_FUNCTION_MEMORY_MB,
        log_group=log_group,
        environment=ProbeEnvironment(
            taxonomy_file=taxonomy_file, service_name=PROBE_SERVICE_NAME
        ).to_environment(),
    )
    acknowledge(
        function,
        "AwsSolutions-L1",
        "Pinned to Python 3.12 on purpose: the shared bundle's wheels (Pillow) are fetched for cp312 and the "
        "runtime must match them; move both together (constants.LAMBDA_PYTHON_VERSION).",
    )
    return function


def acknowledge_probe_invoke(role: iam.IRole, function: lambda_.IFunction) -> None:
    """The state machine role's invoke grant covers the function's versions too (the LambdaInvoke task's)."""
    acknowledge(
        role,
        f"AwsSolutions-IAM5[Resource::{nag_resource(function, f'{function.function_arn}:*')}]",
        "Step Functions' LambdaInvoke grants lambda:InvokeFunction on the probe function and its versions "
        "(<arn>:*); the pipeline invokes the unqualified function, and no other function is named.",
    )


def build_probe(
    scope: Construct,
    *,
    name_prefix: str,
    variant: dict[str, Any],
    function: lambda_.IFunction,
    then: sfn.IChainable,
) -> sfn.IChainable:
    """CreateProbeConfig … DeleteProbeEndpoint, continuing with `then` only when the probe passed.

    `variant`: the production variant the rollout creates (RolloutTarget.production_variant), at one instance.
    """
    endpoint_name = probe_endpoint_name(name_prefix)
    endpoint_arn = sagemaker_arn(scope, "endpoint", endpoint_name)
    configs_arn = sagemaker_arn(scope, "endpoint-config", f"{name_prefix}-*")
    limit = TRAINING_JOB_NAME_MAX - len(PROBE_CONFIG_SUFFIX)
    config_name = f'{{% $substring($training.job_name, 0, {limit}) & "{PROBE_CONFIG_SUFFIX}" %}}'
    keep_input = "{% $states.input %}"

    failed = sfn.Fail.jsonata(
        scope,
        "ProbeFailed",
        error="ProbeFailed",
        cause='{% "the new model " & $training.model_data_uri & " failed the probe before any traffic shifted '
        'to it (the endpoint still serves the previous model): " & $probe_error %}',
    )
    cleanup = _call(
        scope, "DeleteProbeAfterFailure", "deleteEndpoint", {"EndpointName": endpoint_name}, [endpoint_arn]
    )
    cleanup.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(10), backoff_rate=2)
    cleanup.add_catch(failed, errors=["States.ALL"])  # nothing to delete, or deletion failed: report the probe
    cleanup.next(failed)

    def on_error(step: sfn.TaskStateBase, what: str) -> None:
        # A Lambda error's Cause is its JSON report: keep the message ProbeFailed carries.
        cause = (
            '$states.errorOutput.Error = "ProbeFailed" ? $parse($states.errorOutput.Cause).errorMessage : '
            "$states.errorOutput.Cause"
        )
        step.add_catch(cleanup, errors=["States.ALL"], assign={"probe_error": f'{{% "{what}: " & ({cause}) %}}'})

    create_config = _call(
        scope,
        "CreateProbeConfig",
        "createEndpointConfig",
        {
            "EndpointConfigName": config_name,
            "ProductionVariants": [
                {**variant, "ModelName": "{% $training.job_name %}", "InitialInstanceCount": 1}
            ],
        },
        [configs_arn],
        comment="The rollout's variant on one instance, real-time: the probe waits for its answers",
    )
    create_config.add_catch(
        failed,
        errors=["States.ALL"],
        assign={"probe_error": '{% "CreateProbeConfig: " & $states.errorOutput.Cause %}'},
    )
    create_endpoint = _call(
        scope,
        "CreateProbeEndpoint",
        "createEndpoint",
        {"EndpointName": endpoint_name, "EndpointConfigName": config_name},
        [endpoint_arn, configs_arn],
    )
    # Most likely a probe endpoint a stopped execution left behind: the cleanup deletes it for the next run.
    on_error(
        create_endpoint, f"CreateEndpoint {endpoint_name} failed (one left by a stopped execution is deleted now)"
    )
    wait = sfn.Wait.jsonata(
        scope, "WaitForProbe", time=sfn.WaitTime.duration(Duration.seconds(PROBE_POLL_SECONDS))
    )
    describe = _call(
        scope,
        "DescribeProbe",
        "describeEndpoint",
        {"EndpointName": endpoint_name},
        [endpoint_arn],
        outputs="{% {'EndpointStatus': $states.result.EndpointStatus, "
        "'FailureReason': $states.result.FailureReason} %}",
    )
    describe.add_retry(errors=["States.ALL"], max_attempts=5, interval=Duration.seconds(10), backoff_rate=2)
    on_error(describe, f"DescribeEndpoint {endpoint_name} failed")
    invoke = tasks.LambdaInvoke.jsonata(
        scope,
        "ProbeNewModel",
        comment="The labeller's exact request, then a forced choice: a taxonomy label with logprobs or no rollout",
        lambda_function=function,
        payload=sfn.TaskInput.from_object({"EndpointName": endpoint_name}),
        assign={"probe": "{% $states.result.Payload %}"},
        outputs=keep_input,
    )
    # SageMaker's transient answers (ModelNotReady, throttling) are retried; a wrong answer (ProbeFailed) is not.
    invoke.add_retry(errors=["TransientFault"], max_attempts=3, interval=Duration.seconds(30), backoff_rate=2)
    on_error(invoke, "the probe")
    delete = _call(scope, "DeleteProbeEndpoint", "deleteEndpoint", {"EndpointName": endpoint_name}, [endpoint_arn])
    delete.add_retry(errors=["States.ALL"], max_attempts=5, interval=Duration.seconds(10), backoff_rate=2)
    delete.add_catch(
        sfn.Fail.jsonata(
            scope,
            "ProbeEndpointNotDeleted",
            error="ProbeEndpointNotDeleted",
            cause=f'{{% "the new model passed the probe but the probe endpoint {endpoint_name} could not be '
            f"deleted, so nothing was rolled out: delete it (aws sagemaker delete-endpoint --endpoint-name "
            f'{endpoint_name}) and start the execution again: " & $states.errorOutput.Cause %}}',
        ),
        errors=["States.ALL"],
    )
    not_in_service = sfn.Pass.jsonata(
        scope,
        "ProbeEndpointFailed",
        assign={
            "probe_error": '{% "the probe endpoint ended as " & $states.input.EndpointStatus & ": " & '
            '($exists($states.input.FailureReason) ? $states.input.FailureReason : "no reason given") %}'
        },
    )
    not_in_service.next(cleanup)
    loading = sfn.Condition.jsonata(
        '{% $states.input.EndpointStatus in ["Creating", "Updating", "SystemUpdating"] %}'
    )
    ready = sfn.Condition.jsonata('{% $states.input.EndpointStatus = "InService" %}')
    create_config.next(create_endpoint).next(wait).next(describe).next(
        sfn.Choice.jsonata(scope, "ProbeReady").when(loading, wait).when(ready, invoke).otherwise(not_in_service)
    )
    invoke.next(delete).next(then)
    return create_config


def _call(
    scope: Construct,
    construct_id: str,
    action: str,
    parameters: dict[str, Any],
    resources: list[str],
    *,
    comment: str | None = None,
    outputs: str = "{% $states.input %}",
) -> tasks.CallAwsService:
    return tasks.CallAwsService.jsonata(
        scope,
        construct_id,
        comment=comment,
        service="sagemaker",
        action=action,
        parameters=parameters,
        iam_resources=resources,
        outputs=outputs,
    )


__all__ = [
    "acknowledge_probe_invoke",
    "build_probe",
    "build_probe_function",
    "probe_endpoint_name",
    "probe_seconds",
]
