"""Limits and fixed names the pipeline's states share (SageMaker's, Step Functions' and launch.py's)."""

from __future__ import annotations

from aws_cdk import aws_logs as logs

TRAINING_JOB_NAME_MAX = 63  # CreateTrainingJob / CreateModel / CreateEndpointConfig name limit
ROLLOUT_POLL_SECONDS = 60  # DescribeEndpoint cadence while a blue/green deployment runs
STATE_MACHINE_SLACK_SECONDS = 3600  # on top of training + rollout: queueing, model creation, API calls
PIPELINE_LOG_RETENTION = logs.RetentionDays.ONE_YEAR  # runs are rare; keep a year of audit trail
TRAIN_CHANNEL = "train"  # SM_CHANNEL_TRAIN in launch.py
MODEL_CHANNEL = "model"  # SM_CHANNEL_MODEL in launch.py (optional base weights)
SERVED_CHANNEL = "served"  # SM_CHANNEL_SERVED in launch.py: the served model, the evaluation's baseline
# The keys an execution input may have (docs/training-pipeline.md); anything else is refused.
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
