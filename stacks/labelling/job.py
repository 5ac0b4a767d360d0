"""The labelling job of endpoint.mode scheduled: its IAM role and its CreateTrainingJob request.

The request is a Step Functions JSONata template (the window state machine's `createTrainingJob.sync` states
fill `$plan`, `$model` and `$window`): the pinned LMI image with the entry point replaced
(stacks/labelling/job_code.py); three channels: code (the bundle), manifest (the window's shards,
`ShardedByS3Key`) and model (the weights prefix in `FastFile` mode, read as vLLM loads them instead of copied
first); managed Spot with `MaxWaitTimeInSeconds` and a checkpoint prefix per window; and the labeller's environment
contract (classification/labeller_environment.py).

The role reads exactly: the photos under the labelled prefixes (current versions: the job reads with If-Match and
never passes a VersionId, so no s3:GetObjectVersion), the window's manifests and checkpoints, the code object, the
model prefix, the LMI image; it writes the labels table with conditional PutItem only (no UpdateItem, no delete),
the checkpoints and the job's output under the window prefix, and its own log streams.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from stacks.common.container_images import grant_ecr_pull
from stacks.common.nag import acknowledge, nag_resource
from stacks.common.sagemaker_jobs import CHECKPOINT_LOCAL_PATH, grant_job_logs_and_metrics
from stacks.config.sections import ScheduledLabellingConfig
from stacks.labelling.job_code import CODE_CHANNEL_NAME, ENTRYPOINT
from stacks.labelling.labeller_function import photo_list_statement
from stacks.storage.model_store import grant_read_model

WINDOWS_PREFIX = "windows/"  # lambda/window_files.py WINDOWS_PREFIX: everything of a window lives under it
MANIFEST_CHANNEL = "manifest"  # labelling_job/job_environment.py reads these channel names
MODEL_CHANNEL = "model"


def job_name_pattern(name_prefix: str) -> str:
    """Every labelling job's name starts with this (the role's and the state machine's grants name it)."""
    return f"{name_prefix}-label-"


def _s3_uri_expression(bucket_name: str, key_expression: str) -> str:
    return "{% 's3://" + bucket_name + "/' & " + key_expression + " %}"


def job_request(
    config: ScheduledLabellingConfig,
    *,
    spot: bool,
    role: iam.IRole,
    image_uri: str,
    code: s3_assets.Asset,
    work_bucket: s3.IBucket,
    data_key: kms.IKey,
    environment: Mapping[str, str],
) -> dict[str, Any]:
    """CreateTrainingJob's arguments for one attempt of a window (`spot` or the on-demand fallback)."""
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": config.max_job_minutes * 60}
    if spot:
        stopping["MaxWaitTimeInSeconds"] = config.max_wait_seconds
    bucket = work_bucket.bucket_name
    return {
        "TrainingJobName": "{% $window.spot_job %}" if spot else "{% $window.on_demand_job %}",
        "RoleArn": role.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": list(ENTRYPOINT),
            "ContainerArguments": ["--batch-size", str(config.batch_size)],
        },
        "Environment": dict(environment),
        "InputDataConfig": [
            _channel(CODE_CHANNEL_NAME, code.s3_object_url, "FullyReplicated", "File"),
            _channel(
                MANIFEST_CHANNEL, _s3_uri_expression(bucket, "$plan.manifest_prefix"), "ShardedByS3Key", "File"
            ),
            _channel(MODEL_CHANNEL, "{% $model %}", "FullyReplicated", "FastFile"),
        ],
        "OutputDataConfig": {
            "S3OutputPath": _s3_uri_expression(bucket, "'" + WINDOWS_PREFIX + "' & $plan.window_id & '/output/'"),
            "KmsKeyId": data_key.key_arn,
        },
        "ResourceConfig": {
            "InstanceType": config.instance_type,
            "InstanceCount": "{% $plan.hosts %}",
            "VolumeSizeInGB": config.volume_size_gb,
            # ml.g5 instances carry NVMe instance storage, for which SageMaker refuses a VolumeKmsKeyId
            # (hardware-encrypted), as the training pipeline's P5 jobs.
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
        # The checkpoint is the same for both attempts: the on-demand fallback resumes where Spot stopped.
        "CheckpointConfig": {
            "S3Uri": _s3_uri_expression(bucket, "$plan.checkpoint_prefix"),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        },
    }


def _channel(name: str, uri: str, distribution: str, mode: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "InputMode": mode,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": distribution}
        },
    }


def build_job_role(
    scope: Construct,
    *,
    name_prefix: str,
    photos: s3.IBucket,
    photo_prefixes: Sequence[str],
    table: dynamodb.ITable,
    data_key: kms.IKey,
    work_bucket: s3.IBucket,
    code: s3_assets.Asset,
    model_prefix_uri: str,
    image_uri: str,
    image_repository: str,
) -> iam.Role:
    """SageMaker's role for the labelling jobs (module docstring)."""
    stack = Stack.of(scope)
    role = iam.Role(
        scope,
        "JobRole",
        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description=f"{name_prefix} labelling jobs: read photos, manifests and the model, write labels",
    )
    reasons: dict[str, str] = {}
    photo_arns = [photos.arn_for_objects(f"{prefix}*") for prefix in sorted(set(photo_prefixes))]
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=photo_arns))
    for prefix in sorted(set(photo_prefixes)):
        # With ListBucket a photo deleted while PENDING reads 404 (recorded MISSING) instead of 403.
        role.add_to_policy(photo_list_statement(photos, prefix))
    for arn in photo_arns:
        reasons[nag_resource(scope, arn)] = (
            "A window labels the photos its manifest names, any of them under the prefixes the upload path and "
            "the backfill record (current versions only: reads use If-Match, no GetObjectVersion)."
        )
    # Conditional PutItem only (labeller_aws.DynamoLabelStore): no UpdateItem, no DeleteItem, no Query or Scan.
    role.add_to_policy(
        iam.PolicyStatement(actions=["dynamodb:GetItem", "dynamodb:PutItem"], resources=[table.table_arn])
    )
    windows = work_bucket.arn_for_objects(f"{WINDOWS_PREFIX}*")
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], resources=[windows]
        )
    )
    # Checkpoint sync mirrors the deletion of a renamed `.partial` file (labelling_job/progress.py).
    role.add_to_policy(iam.PolicyStatement(actions=["s3:DeleteObject"], resources=[windows]))
    role.add_to_policy(photo_list_statement(work_bucket, WINDOWS_PREFIX))
    reasons[nag_resource(scope, windows)] = (
        "Each window's manifest shards, checkpoint files and job output have generated names under windows/ of "
        "the dedicated work bucket, which holds nothing else."
    )
    # The code object by its exact key; an S3Prefix channel lists its prefix, which is that same key.
    code_arn = stack.format_arn(
        service="s3", region="", account="", resource=code.s3_bucket_name, resource_name=code.s3_object_key
    )
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[code_arn]))
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[stack.format_arn(service="s3", region="", account="", resource=code.s3_bucket_name)],
            conditions={"StringLike": {"s3:prefix": [code.s3_object_key]}},
        )
    )
    model_arn = grant_read_model(role, model_prefix_uri)
    reasons[nag_resource(scope, model_arn)] = (
        "The job reads the weights of the model it labels with: every file under that model's S3 prefix."
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], resources=[data_key.key_arn]
        )
    )
    grant_ecr_pull(role, image_uri, image_repository)
    streams, group = grant_job_logs_and_metrics(role, job_names=f"{job_name_pattern(name_prefix)}*")
    reasons[nag_resource(scope, streams)] = (
        "SageMaker names one log stream per job and host at run time; the grant is limited to this app's "
        "labelling jobs (their name prefix) in SageMaker's training log group."
    )
    reasons[nag_resource(scope, group)] = (
        "SageMaker creates its shared training log group on first use and describes its streams; the grant names "
        "exactly that log group."
    )
    reasons["*"] = (
        "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource-level permissions; "
        "PutMetricData is limited to SageMaker's training namespace by a condition."
    )
    for resource, reason in reasons.items():
        acknowledge(role, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
    return role


__all__ = [
    "MANIFEST_CHANNEL",
    "MODEL_CHANNEL",
    "WINDOWS_PREFIX",
    "build_job_role",
    "job_name_pattern",
    "job_request",
]
