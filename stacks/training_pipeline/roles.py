"""The pipeline's IAM: the training jobs' role, and what the state machine's own role may do.

Every grant names this app's resources: the training bucket's prefixes, the `<name_prefix>-*` jobs, models and
endpoint configs, the one code archive, the two rollback alarms. The cdk-nag acknowledgements say why each
remaining wildcard cannot be narrower.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from stacks.common import constants
from stacks.common.container_images import grant_ecr_pull
from stacks.common.nag import acknowledge, nag_resource
from stacks.common.sagemaker_jobs import grant_job_logs_and_metrics, grant_sync_training_job, sagemaker_arn
from stacks.common.training_image import default_training_images
from stacks.serving.rollout import RolloutAlarms
from stacks.storage.model_store import ModelStore


def build_training_role(
    scope: Construct, *, name_prefix: str, store: ModelStore, code: s3_assets.Asset, image_uri: str
) -> iam.Role:
    """SageMaker's role for the training jobs: read datasets, base weights and code; write models, checkpoints."""
    stack = Stack.of(scope)
    bucket = store.bucket
    role = iam.Role(
        scope,
        "TrainingRole",
        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description=f"{name_prefix} training jobs: read datasets and code, write models and checkpoints",
    )
    # models/: the served model (a trained one) is the evaluation's baseline (the `served` channel).
    read_prefixes = [
        constants.DATASETS_PREFIX,
        constants.BASE_MODELS_PREFIX,
        constants.CHECKPOINTS_PREFIX,
        constants.MODELS_PREFIX,
    ]
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
            resources=[store.data_key.key_arn],
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
                    resource=code.s3_bucket_name,
                    resource_name=code.s3_object_key,
                )
            ],
        )
    )
    grant_ecr_pull(role, image_uri, default_training_images().repository)
    log_group_arn, training_log_group_arn = grant_job_logs_and_metrics(role, job_names=f"{name_prefix}-*")
    policy_statement_ids = [
        nag_resource(scope, bucket.arn_for_objects(f"{prefix}*"))
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
        f"AwsSolutions-IAM5[Resource::{nag_resource(scope, log_group_arn)}]",
        "SageMaker names one log stream per training job, host and algorithm at run time; the grant is "
        "limited to streams of this app's jobs (the job name prefix) in SageMaker's training log group.",
    )
    acknowledge(
        role,
        f"AwsSolutions-IAM5[Resource::{nag_resource(scope, training_log_group_arn)}]",
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


def grant_state_machine(
    scope: Construct,
    role: iam.IRole,
    *,
    name_prefix: str,
    store: ModelStore,
    training_role: iam.IRole,
    alarms: RolloutAlarms | None,
    rolls_out: bool,
) -> None:
    """What the state machine's role needs beyond the grants its CallAwsService tasks add themselves."""
    models_arn = store.bucket.arn_for_objects(f"{constants.MODELS_PREFIX}*")
    job_arn = sagemaker_arn(scope, "training-job", f"{name_prefix}-*")
    grant_sync_training_job(role, job_arn=job_arn, job_role=training_role)
    store.data_key.grant_decrypt(role)  # metrics.json is SSE-KMS
    if alarms is not None:
        # UpdateEndpoint's AutoRollbackConfiguration names these alarms; the caller must be able to read them.
        alarms.grant_describe(role)
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "CDK adds the CloudWatch Logs delivery and X-Ray actions that state machine logging and tracing need; "
        "none of them supports resource-level permissions.",
    )
    acknowledge(
        role,
        f"AwsSolutions-IAM5[Resource::{nag_resource(scope, job_arn)}]",
        "Each execution creates a training job with a new name; the grant is limited to this app's job name "
        "prefix.",
    )
    acknowledge(
        role,
        f"AwsSolutions-IAM5[Resource::{nag_resource(scope, models_arn)}]",
        "The pipeline reads evaluation/metrics.json of the model a run just trained; models live under one "
        "prefix of the training bucket with run-specific names.",
    )
    if rolls_out:
        for resource in (
            sagemaker_arn(scope, "model", f"{name_prefix}-*"),
            sagemaker_arn(scope, "endpoint-config", f"{name_prefix}-*"),
        ):
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag_resource(scope, resource)}]",
                "Each rollout creates a model and an endpoint config named after its training job; the "
                "grant is "
                "limited to this app's name prefix.",
            )
