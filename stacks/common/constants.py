"""Literals with units, in one place. Everything a user may want to change is a config key
instead (stacks/config/)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONTEXT_KEY = "photo_labeler"  # the cdk.json context object that holds the whole configuration
MODEL_CODE_DIR = PROJECT_ROOT / "model_code"
SERVING_PROPERTIES_FILE = MODEL_CODE_DIR / "serving.properties"
LMI_IMAGE_TABLE_FILE = Path(__file__).resolve().parent / "data" / "djl_lmi_images.json"

# --- Lambda ----------------------------------------------------------------------------------------------------
LAMBDA_SOURCE_DIR = PROJECT_ROOT / "lambda"
LAMBDA_REQUIREMENTS_FILE = LAMBDA_SOURCE_DIR / "requirements.txt"
CLASSIFICATION_DIR = PROJECT_ROOT / "classification"
LAMBDA_PYTHON_VERSION = "3.12"  # the bundler fetches cp312 wheels; the runtime must match
# manylinux_2_28 carries current Pillow wheels; manylinux2014 the pure/older ones. Both, or pip silently picks
# an older Pillow that still has a 2014 wheel.
LAMBDA_WHEEL_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
LAMBDA_HANDLER = "handler.lambda_handler"  # docs/interfaces.md
POWERTOOLS_SERVICE_NAME = "photo-labeler"  # docs/interfaces.md: the EMF dimension `service`
LAMBDA_LOG_RETENTION_DAYS = 30
# AWS's guidance for SQS event sources: visibility timeout >= 6x the function timeout, so a message is not
# redelivered while a (retried) invocation may still be working on it.
QUEUE_VISIBILITY_TIMEOUT_FACTOR = 6
QUEUE_RETENTION_DAYS = 14  # the SQS maximum: without a model, uploads wait this long for the endpoint
ESM_MIN_MAX_CONCURRENCY = 2  # Lambda's lower bound for an SQS event source's maximum concurrency
ESM_MAX_MAX_CONCURRENCY = 1000  # and its upper bound
SQS_MAX_BATCH_SIZE = 10  # without a batching window; larger batches would need one
SQS_MAX_RECEIVE_COUNT = 1000  # SQS redrive policy limit
LAMBDA_MAX_TIMEOUT_SECONDS = 900
# One photo's worst case in the labeller (lambda/labeller_core.BACKFILL_TIME_MARGIN_MS): two endpoint attempts of
# 5 s connect + 60 s read (labeller_aws.ENDPOINT_CLIENT_CONFIG) plus S3/DynamoDB. Both handlers stop taking records
# when less than this is left of the invocation, so a function timeout must hold at least one.
LABELLER_RECORD_WORST_CASE_SECONDS = 140
LAMBDA_MIN_MEMORY_MB = 128
LAMBDA_MAX_MEMORY_MB = 10240

# --- SageMaker endpoint ----------------------------------------------------------------------------------------
VARIANT_NAME = "AllTraffic"
SAGEMAKER_MAX_STARTUP_TIMEOUT_SECONDS = 3600  # API limit of ContainerStartupHealthCheckTimeoutInSeconds
SAGEMAKER_MAX_DOWNLOAD_TIMEOUT_SECONDS = 3600  # API limit of ModelDataDownloadTimeoutInSeconds
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# One ml.g5.xlarge labels a photo every ~0.67 s, prefill-bound, however requests are batched (the seed measured
# 674 s per 1,000 photos): requests beyond the engine's batch wait about this long each
# (stacks/serving/endpoint_load.py).
ENDPOINT_SECONDS_PER_PHOTO = 0.674
SAGEMAKER_LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints"  # where the hosting agent writes container logs
SAGEMAKER_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"  # instance/GPU metrics published with the role
SAGEMAKER_INVOCATION_NAMESPACE = "AWS/SageMaker"  # invocation, latency and async backlog metrics
ROLLOUT_WAIT_MAX_SECONDS = 3600  # TrafficRoutingConfig.WaitIntervalInSeconds and TerminationWaitInSeconds
ROLLOUT_TIMEOUT_RANGE = (600, 28800)  # BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds
CANARY_MAX_PERCENT = 50  # CanarySize must be <= 50 % of the variant's instances

# --- SageMaker training and the backfill -----------------------------------------------------------------------
SAGEMAKER_MAX_RUNTIME_SECONDS = 28 * 24 * 3600  # CreateTrainingJob's hard ceiling (the default quota is 5 days)
DISTRIBUTED_MAP_MAX_CONCURRENCY = 10_000  # Step Functions' limit on a Distributed Map's MaxConcurrency
MAX_ITEMS_PER_BATCH = 1_000  # our bound: one batch's Lambda must finish in 15 min even when every item is skipped

# --- Storage ---------------------------------------------------------------------------------------------------
ABORT_INCOMPLETE_UPLOAD_DAYS = 7
ACCESS_LOG_PREFIX = "image-bucket/"

# --- Training bucket layout (stacks/storage/model_store.py) ------------------------------------------------------
DATASETS_PREFIX = "datasets/"  # DatasetDicts written by training_job.build_dataset
BASE_MODELS_PREFIX = "base-models/"  # hub-layout base weights (training.base_model_prefix)
MODELS_PREFIX = "models/"  # one directory per training job: the servable model + evaluation/metrics.json
CHECKPOINTS_PREFIX = "checkpoints/"  # spot/resume checkpoints, expired after training.checkpoint_retention_days

# --- Alarms ----------------------------------------------------------------------------------------------------
ALARM_PERIOD_SECONDS = 60

# --- CloudFront (the review page) --------------------------------------------------------------------------------
# CLOUDFRONT-scope WAF web ACLs and the ACM certificates CloudFront serves exist only in this region.
CLOUDFRONT_REGION = "us-east-1"
