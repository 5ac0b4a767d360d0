"""The Train state: sagemaker:createTrainingJob.sync, evaluation inside the job (evaluate.py → metrics.json).

A `CustomState`, not the L2 `SageMakerCreateTrainingJob`: in aws-cdk-lib 2.275 the L2 cannot express managed spot
training, `CheckpointConfig` or `OutputDataConfig.CompressionType`; the IAM the L2 would add is granted in
roles.py, scoped tighter.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.common import constants
from stacks.common.sagemaker_jobs import CHECKPOINT_LOCAL_PATH
from stacks.config import TrainingPipelineConfig
from stacks.training_pipeline.names import (
    METRIC_DEFINITIONS,
    MODEL_CHANNEL,
    SERVED_CHANNEL,
    TRAIN_CHANNEL,
)
from stacks.training_pipeline.training_asset import ENTRY_POINT


def training_arguments(
    config: TrainingPipelineConfig,
    *,
    bucket_uri: str,
    training_role: iam.IRole,
    image_uri: str,
    code: s3_assets.Asset,
    data_key: kms.IKey,
    served_channel: bool = False,
) -> dict[str, Any]:
    """CreateTrainingJob's request; `$request` (request.jsonata) supplies the per-execution values.

    `served_channel`: the model the endpoint serves (`$served`, served_gate.py) becomes the `served` channel,
    which launch.py hands to the evaluation as the baseline to beat.
    """
    channel = (
        '{"ChannelName": "%s", "InputMode": "File", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", '
        '"S3DataDistributionType": "FullyReplicated", "S3Uri": %s}}}'
    )
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": config.max_runtime_seconds}
    if config.use_spot:
        stopping["MaxWaitTimeInSeconds"] = config.effective_max_wait_seconds
    return {
        "TrainingJobName": "{% $request.job_name %}",
        "RoleArn": training_role.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(m) for m in METRIC_DEFINITIONS],
        },
        "HyperParameters": "{% $merge([$request.hyperparameters, "
        + json.dumps({"sagemaker_program": ENTRY_POINT})
        + ', {"sagemaker_submit_directory": "'
        + code.s3_object_url
        + '"}]) %}',
        "InputDataConfig": "{% "
        + ("$append(" if served_channel else "")
        + "$append(["
        + channel % (TRAIN_CHANNEL, "$request.dataset_s3_uri")
        + "], $request.base_model_s3_uri != null ? ["
        + channel % (MODEL_CHANNEL, "$request.base_model_s3_uri")
        + "] : [])"
        + (
            ', $type($served) = "string" ? [' + channel % (SERVED_CHANNEL, "$served") + "] : [])"
            if served_channel
            else ""
        )
        + " %}",
        "OutputDataConfig": {
            "S3OutputPath": f"{bucket_uri}{constants.MODELS_PREFIX}",
            "KmsKeyId": data_key.key_arn,
            # An uncompressed model directory is servable as is (S3Prefix model data): no 15 GB tarball.
            "CompressionType": "NONE",
        },
        "ResourceConfig": {
            "InstanceType": config.instance_type,
            "InstanceCount": "{% $request.instance_count %}",
            "VolumeSizeInGB": config.volume_size_gb,
            # P5 has local NVMe storage, which SageMaker rejects a VolumeKmsKeyId for (hardware-encrypted).
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": config.use_spot,
        # Multi-node ZeRO-3 exchanges parameter shards and gradients between hosts on every step.
        "EnableInterContainerTrafficEncryption": True,
        "CheckpointConfig": {
            "S3Uri": "{% '" + bucket_uri + constants.CHECKPOINTS_PREFIX + "' & $request.job_name & '/' %}",
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        },
    }


def build_train_state(
    scope: Construct,
    config: TrainingPipelineConfig,
    *,
    bucket_uri: str,
    training_role: iam.IRole,
    image_uri: str,
    code: s3_assets.Asset,
    data_key: kms.IKey,
    served_channel: bool = False,
) -> sfn.CustomState:
    """Train, then assign `$training` (job name, model directory with a trailing '/', billable seconds)."""
    resource = f"arn:{Aws.PARTITION}:states:::sagemaker:createTrainingJob.sync"
    train = sfn.CustomState(
        scope,
        "Train",
        state_json={
            "Type": "Task",
            "Comment": "Train with accelerate + DeepSpeed ZeRO-3 on every GPU, then evaluate (metrics.json)",
            "Resource": resource,
            "Arguments": training_arguments(
                config,
                bucket_uri=bucket_uri,
                training_role=training_role,
                image_uri=image_uri,
                code=code,
                data_key=data_key,
                served_channel=served_channel,
            ),
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
