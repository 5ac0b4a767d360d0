"""What every SageMaker training job of the app shares, whoever starts it: the training pipeline's fine-tunes and
scheduled mode's labelling jobs both run as CreateTrainingJob, each started by a Step Functions `.sync` task.

SageMaker's fixed names (its training log group and metrics namespace, the checkpoint path, the `.sync` rule), the
ARN of a SageMaker resource, and the two grants both kinds of job need: the job role's logs and metrics, and the
state machine's right to start, watch and stop a job.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"  # SageMaker's default; launch.py's default --checkpoint_dir
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRAINING_METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
SYNC_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"  # the .sync integration's managed rule


def sagemaker_arn(scope: Construct, resource: str, name: str) -> str:
    """arn:<partition>:sagemaker:<region>:<account>:<resource>/<name> of the scope's stack."""
    return Stack.of(scope).format_arn(service="sagemaker", resource=resource, resource_name=name)


def pass_role_statement(role: iam.IRole) -> iam.PolicyStatement:
    """iam:PassRole on `role`, to SageMaker only."""
    return iam.PolicyStatement(
        actions=["iam:PassRole"],
        resources=[role.role_arn],
        conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    )


def grant_job_logs_and_metrics(role: iam.Role, *, job_names: str) -> tuple[str, str]:
    """A job role's logs and metrics: its own streams (`job_names`, a name pattern ending in `*`) in SageMaker's
    training log group, creating and describing that group, and PutMetricData in SageMaker's training namespace
    only.

    Returns the streams' and the group's ARNs, for the caller's cdk-nag reasons.
    """
    stack = Stack.of(role)
    streams = stack.format_arn(
        service="logs",
        resource="log-group",
        resource_name=f"{TRAINING_LOG_GROUP}:log-stream:{job_names}",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    group = stack.format_arn(
        service="logs",
        resource="log-group",
        resource_name=f"{TRAINING_LOG_GROUP}:*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    role.add_to_policy(
        iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[streams])
    )
    role.add_to_policy(
        iam.PolicyStatement(actions=["logs:CreateLogGroup", "logs:DescribeLogStreams"], resources=[group])
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": TRAINING_METRICS_NAMESPACE}},
        )
    )
    return streams, group


def grant_sync_training_job(role: iam.IRole, *, job_arn: str, job_role: iam.IRole) -> None:
    """A state machine's `.sync` run of a training job: start, describe and stop the jobs `job_arn` names, pass
    them `job_role`, and manage the integration's managed EventBridge rule."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            # .sync tags the job it starts (MANAGED_BY_AWS) and reads the tags back: without AddTags every
            # run fails (aws-cdk issue 32294, fixed in the L2 task by PR 32536). AWS's documented policy grants
            # ListTags on "*"; this app's jobs are the only ones it needs. Stop: when the execution is stopped.
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
    role.add_to_principal_policy(pass_role_statement(job_role))
    rule_arn = Stack.of(role).format_arn(service="events", resource="rule", resource_name=SYNC_RULE)
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"], resources=[rule_arn]
        )
    )


__all__ = [
    "CHECKPOINT_LOCAL_PATH",
    "SYNC_RULE",
    "TRAINING_LOG_GROUP",
    "TRAINING_METRICS_NAMESPACE",
    "grant_job_logs_and_metrics",
    "grant_sync_training_job",
    "pass_role_statement",
    "sagemaker_arn",
]
