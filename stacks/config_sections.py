"""The sections of `AppConfig` (stacks/config.py) for the training pipeline, the backfill, the review page and
monitoring. AppConfig declares every section as one of its fields; the storage, endpoint and upload sections are
defined beside it, these here to keep both files short. Each default lives once, on its field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stacks import constants
from stacks.config_parsing import ConfigError
from stacks.config_parsing import check as _check
from stacks.training_image import UnsupportedTrainingImage, default_training_images

_INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_MAX_RUNTIME = constants.SAGEMAKER_MAX_RUNTIME_SECONDS
# The backfill handler stops taking items when less than this is left, so a shorter timeout could not finish even
# one worst-case item.
_HANDLER_TIME_MARGIN_SECONDS = constants.LABELLER_RECORD_WORST_CASE_SECONDS
_BUCKET_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# CloudFront serves only ACM certificates of us-east-1 (CloudFront Developer Guide, "Requirements for using
# SSL/TLS certificates with CloudFront": request or import the certificate in US East (N. Virginia)).
_CLOUDFRONT_CERTIFICATE_RE = re.compile(r"^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/[0-9a-f-]{36}$")
_DOMAIN_NAME_RE = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_BACKFILL_PREFIX_RE = re.compile(r"^([A-Za-z0-9!_.'()/-]+/)?$")  # no '*' or '\': used in a StringMatches
# Hyper-parameters the training pipeline sets itself: an execution (or training.hyperparameters) may not set them.
RESERVED_HYPERPARAMETERS = (
    "sagemaker_program",
    "sagemaker_submit_directory",
    "evaluate",
    "min_accuracy",
    "confidence_threshold",
    "checkpoint_dir",
    "output_dir",
    "final_model_dir",
    "dataset_name",
    "train_config",
    "accelerate_config",
    "deepspeed_config",
)


# --- sections ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingPipelineConfig:
    """`photo_labeler.training`: the Step Functions training pipeline and the model lifecycle."""

    instance_type: str = "ml.p5.48xlarge"  # 8x H100; launch.py spreads over SM_NUM_GPUS and SM_HOSTS
    instance_count: int = 1
    max_instance_count: int = 4  # the most an execution may ask for with `instance_count`
    volume_size_gb: int = 500  # base ~15 GB + up to three ~120-GB ZeRO-3 checkpoints while rotating + final model
    max_runtime_seconds: int = 2 * 24 * 3600
    # P5 spot capacity is scarce: on by choice only. Spot restarts resume from the S3 checkpoints.
    use_spot: bool = False
    max_wait_seconds: int | None = (
        None  # spot only: runtime + waiting for capacity; default 2x max_runtime_seconds
    )
    image_version: str = "5.3.0-pytorch2.9.0"  # a key of stacks/data/hf_training_images.json
    # Extra `--name value` arguments for training_job/launch.py (forwarded to train.py), e.g. num_train_epochs.
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    # Key prefix in the training bucket with hub-layout base weights (e.g. base-models/llava-v1.6-mistral-7b-hf/),
    # mounted as the `model` channel; None: the Hub id of the training config (the job has internet: no VPC).
    base_model_prefix: str | None = None
    min_accuracy: float = 0.9  # the gate: validation accuracy below it stops the pipeline before registering
    checkpoint_retention_days: int = 14  # checkpoints are ~120 GB each; spot resumes need them only while running
    serve_registered_model: bool = False  # the endpoint serves the registry's model (run the pipeline once first)

    def __post_init__(self) -> None:
        _check(
            bool(_INSTANCE_TYPE_RE.match(self.instance_type)),
            "instance_type",
            f"must be a SageMaker training instance type like ml.p5.48xlarge, got {self.instance_type!r}",
        )
        _check(self.max_instance_count >= 1, "max_instance_count", f"must be >= 1, got {self.max_instance_count}")
        _check(
            1 <= self.instance_count <= self.max_instance_count,
            "instance_count",
            f"must be 1..max_instance_count ({self.max_instance_count}), got {self.instance_count}",
        )
        _check(1 <= self.volume_size_gb <= 16384, "volume_size_gb", f"must be 1..16384, got {self.volume_size_gb}")
        _check(
            1 <= self.max_runtime_seconds <= _MAX_RUNTIME,
            "max_runtime_seconds",
            f"must be 1..{_MAX_RUNTIME} (28 days), got {self.max_runtime_seconds}",
        )
        if self.max_wait_seconds is not None:
            _check(self.use_spot, "max_wait_seconds", "only applies with use_spot: true")
            _check(
                self.max_runtime_seconds <= self.max_wait_seconds <= _MAX_RUNTIME,
                "max_wait_seconds",
                f"must be max_runtime_seconds ({self.max_runtime_seconds})..{_MAX_RUNTIME}, got "
                f"{self.max_wait_seconds}",
            )
        try:
            default_training_images().check_version(self.image_version)
        except UnsupportedTrainingImage as error:
            raise ConfigError("image_version", str(error)) from None
        for name, value in self.hyperparameters.items():
            _check(
                name not in RESERVED_HYPERPARAMETERS and not name.startswith("sagemaker_"),
                f"hyperparameters.{name}",
                f"is set by the pipeline itself (reserved: {', '.join(RESERVED_HYPERPARAMETERS)}, sagemaker_*)",
            )
            _check(
                isinstance(value, (str, int, float, bool)),
                f"hyperparameters.{name}",
                f"must be a string, number or boolean, got {value!r}",
            )
        if self.base_model_prefix is not None:
            _check(
                self.base_model_prefix.startswith(constants.BASE_MODELS_PREFIX)
                and self.base_model_prefix.endswith("/")
                and len(self.base_model_prefix) > len(constants.BASE_MODELS_PREFIX),
                "base_model_prefix",
                f"must be a key prefix under {constants.BASE_MODELS_PREFIX} ending in '/', like "
                f"'{constants.BASE_MODELS_PREFIX}llava-v1.6-mistral-7b-hf/', got {self.base_model_prefix!r}",
            )
        _check(0.0 < self.min_accuracy <= 1.0, "min_accuracy", f"must be in (0, 1], got {self.min_accuracy}")
        _check(self.checkpoint_retention_days >= 1, "checkpoint_retention_days", "must be >= 1")

    @property
    def effective_max_wait_seconds(self) -> int | None:
        if not self.use_spot:
            return None
        return self.max_wait_seconds or min(2 * self.max_runtime_seconds, _MAX_RUNTIME)


@dataclass(frozen=True)
class BackfillConfig:
    """`photo_labeler.backfill`: the Distributed Map over existing photos (deployed together with the endpoint)."""

    # Keys the backfill may list and read ('' = the whole image bucket); a start outside it is refused.
    source_prefix: str = ""
    # Matched against each key (needs the group `hotel_id`); the default takes the folder after the first one,
    # as in `<any-prefix>/<hotel_id>/<file>`.
    hotel_id_pattern: str = r"^[^/]+/(?P<hotel_id>[^/]+)/"
    items_per_batch: int = 25  # photos per Lambda invocation (~100 s of endpoint time at ~4 s a photo)
    # Batches (= photos on the endpoint) at once; also the most a start may ask for. Shares the endpoint with
    # upload.max_concurrency: 12 + 8 = 20 in flight keep one ml.g5.xlarge at ~13 s of queueing (~0.67 s a photo),
    # far from the 30-s p90 rollback alarm, so a deployment during a backfill is not rolled back by mistake.
    # Synth checks upload + backfill <= endpoint.max_capacity x option.max_rolling_batch_size.
    max_concurrency: int = 8
    tolerated_failure_percentage: float = 5.0  # of items; above it the map run fails (failed batches: redrive)
    retry_attempts: int = 5  # retries of a batch that raised TransientBatchError
    retry_interval_seconds: int = 30  # first wait; doubles each retry (30 s .. 8 min covers a scale-out)
    function_timeout_seconds: int = 900
    function_memory_mb: int = 1024
    # Bucket (name) that receives the image bucket's S3 Inventory reports; None disables the manifest input.
    inventory_bucket: str | None = None
    inventory_prefix: str = ""  # where in that bucket the reports (manifest.json and data files) are
    results_retention_days: int = 90  # per-batch results and failures written by the map run

    def __post_init__(self) -> None:
        _check(
            bool(_BACKFILL_PREFIX_RE.match(self.source_prefix)),
            "source_prefix",
            f"must be '' or a key prefix ending in '/' without '*', got {self.source_prefix!r}",
        )
        try:
            compiled = re.compile(self.hotel_id_pattern)
        except re.error as error:
            raise ConfigError("hotel_id_pattern", f"is not a valid regular expression: {error}") from error
        _check(
            "hotel_id" in compiled.groupindex, "hotel_id_pattern", "must define a named group (?P<hotel_id>...)"
        )
        _check(
            1 <= self.items_per_batch <= constants.MAX_ITEMS_PER_BATCH,
            "items_per_batch",
            f"must be 1..{constants.MAX_ITEMS_PER_BATCH}, got {self.items_per_batch}",
        )
        _check(
            1 <= self.max_concurrency <= constants.DISTRIBUTED_MAP_MAX_CONCURRENCY,
            "max_concurrency",
            f"must be 1..{constants.DISTRIBUTED_MAP_MAX_CONCURRENCY}, got {self.max_concurrency}",
        )
        _check(
            0.0 <= self.tolerated_failure_percentage <= 100.0,
            "tolerated_failure_percentage",
            f"must be 0..100, got {self.tolerated_failure_percentage}",
        )
        _check(0 <= self.retry_attempts <= 10, "retry_attempts", f"must be 0..10, got {self.retry_attempts}")
        _check(self.retry_interval_seconds >= 1, "retry_interval_seconds", "must be >= 1")
        _check(
            _HANDLER_TIME_MARGIN_SECONDS + 60
            <= self.function_timeout_seconds
            <= constants.LAMBDA_MAX_TIMEOUT_SECONDS,
            "function_timeout_seconds",
            f"must be {_HANDLER_TIME_MARGIN_SECONDS + 60}..{constants.LAMBDA_MAX_TIMEOUT_SECONDS} (the handler "
            f"keeps {_HANDLER_TIME_MARGIN_SECONDS} s for the last item), got {self.function_timeout_seconds}",
        )
        _check(
            constants.LAMBDA_MIN_MEMORY_MB <= self.function_memory_mb <= constants.LAMBDA_MAX_MEMORY_MB,
            "function_memory_mb",
            f"must be {constants.LAMBDA_MIN_MEMORY_MB}..{constants.LAMBDA_MAX_MEMORY_MB}",
        )
        if self.inventory_bucket is not None:
            _check(
                bool(_BUCKET_NAME_RE.match(self.inventory_bucket)),
                "inventory_bucket",
                f"must be an S3 bucket name (not an ARN or URI), got {self.inventory_bucket!r}",
            )
        _check(
            bool(_BACKFILL_PREFIX_RE.match(self.inventory_prefix)),
            "inventory_prefix",
            f"must be '' or a key prefix ending in '/' without '*', got {self.inventory_prefix!r}",
        )
        _check(self.results_retention_days >= 1, "results_retention_days", "must be >= 1")


@dataclass(frozen=True)
class ReviewPageConfig:
    """`photo_labeler.review`: the review page for the content team."""

    enabled: bool = True
    # A CLOUDFRONT-scope web ACL (AWS managed common/bad-input/IP-reputation rules + a per-IP rate limit). AWS only
    # accepts those in us-east-1: set `waf` for a stack deployed there, or `web_acl_arn` to attach one from there.
    waf: bool = False
    web_acl_arn: str | None = None
    presigned_url_seconds: int = 300  # how long a photo link works
    backlog_probe_minutes: int = 15  # how often the NEEDS_REVIEW backlog is counted for the dashboard
    lease_seconds: int = 300  # how long a photo a reviewer was given stays theirs alone, unless they decide it
    # A custom domain for the page (both or neither): CloudFront serves it with this ACM certificate (us-east-1)
    # and the TLSv1.2_2021 security policy, which the default *.cloudfront.net certificate cannot have
    # (docs/review-page.md).
    domain_name: str | None = None
    certificate_arn: str | None = None

    def __post_init__(self) -> None:
        self._check_domain()
        if self.waf and self.web_acl_arn:
            raise ConfigError("waf", "set either waf (create a web ACL) or web_acl_arn (attach one), not both")
        if self.web_acl_arn is not None and not self.web_acl_arn.startswith("arn:aws:wafv2:us-east-1:"):
            raise ConfigError(
                "web_acl_arn",
                "must be a CLOUDFRONT-scope WAFv2 web ACL ARN (arn:aws:wafv2:us-east-1:...), "
                f"got {self.web_acl_arn!r}",
            )
        if not 60 <= self.presigned_url_seconds <= 3600:
            raise ConfigError("presigned_url_seconds", f"must be 60..3600, got {self.presigned_url_seconds}")
        if not 1 <= self.backlog_probe_minutes <= 1440:
            raise ConfigError("backlog_probe_minutes", f"must be 1..1440, got {self.backlog_probe_minutes}")
        if not 60 <= self.lease_seconds <= 3600:
            raise ConfigError("lease_seconds", f"must be 60..3600, got {self.lease_seconds}")

    def _check_domain(self) -> None:
        if (self.domain_name is None) != (self.certificate_arn is None):
            missing = "certificate_arn" if self.certificate_arn is None else "domain_name"
            raise ConfigError(missing, "a custom domain needs both review.domain_name and review.certificate_arn")
        if self.domain_name is not None:
            _check(
                bool(_DOMAIN_NAME_RE.match(self.domain_name)),
                "domain_name",
                f"must be a lower-case DNS name like review.example.com, got {self.domain_name!r}",
            )
        if self.certificate_arn is not None:
            _check(
                bool(_CLOUDFRONT_CERTIFICATE_RE.match(self.certificate_arn)),
                "certificate_arn",
                "must be an ACM certificate ARN in us-east-1 (arn:aws:acm:us-east-1:<account>:certificate/<id>), "
                f"the only region CloudFront takes certificates from; got {self.certificate_arn!r}",
            )


@dataclass(frozen=True)
class MonitoringConfig:
    """`photo_labeler.monitoring`: alarm thresholds (alarms go to alarm_topic_arn or the stack's topic)."""

    queue_age_alarm_seconds: int = 900  # oldest upload waiting longer than this, for 5 minutes in a row
    stall_alarm_minutes: int = 15  # no photo processed for this long while the queue never emptied
    endpoint_5xx_alarm_threshold: int = 5  # endpoint 5xx responses in 5 minutes that raise the alarm
    backfill_failed_alarm: bool = True  # alarm when a backfill execution fails or times out

    def __post_init__(self) -> None:
        if not 60 <= self.queue_age_alarm_seconds <= constants.QUEUE_RETENTION_DAYS * 86_400:
            raise ConfigError(
                "queue_age_alarm_seconds",
                f"must be 60..{constants.QUEUE_RETENTION_DAYS * 86_400} (the queue's retention), "
                f"got {self.queue_age_alarm_seconds}",
            )
        # CloudWatch alarm periods of 1 min or more must be a multiple of 60 s and at most 1 day.
        if not 5 <= self.stall_alarm_minutes <= 1440:
            raise ConfigError("stall_alarm_minutes", f"must be 5..1440, got {self.stall_alarm_minutes}")
        if self.endpoint_5xx_alarm_threshold < 1:
            raise ConfigError("endpoint_5xx_alarm_threshold", "must be >= 1")


# InvokeEndpointAsync's limits (API reference): queued at most 6 h, processed at most 1 h.
MAX_REQUEST_TTL_SECONDS = 21_600
MIN_REQUEST_TTL_SECONDS = 60
MAX_INVOCATION_TIMEOUT_SECONDS = 3_600
MAX_CONCURRENT_INVOCATIONS_LIMIT = 1_000  # AsyncInferenceClientConfig.MaxConcurrentInvocationsPerInstance


@dataclass(frozen=True)
class AsyncInferenceConfig:
    """`photo_labeler.async_inference`: used only with `endpoint.mode: "async"` (stacks/async_inference.py)."""

    # Requests SageMaker hands one instance at once; the container batches them (vLLM continuous batching), so
    # the engine batch of serving.properties is the natural value; more only queue inside the container.
    max_concurrent_invocations_per_instance: int = 8
    # Target of ApproximateBacklogSizePerInstance: queued requests per instance. ~0.67 s a photo on one g5, so 200
    # is ~2 minutes of backlog per instance, about what a new instance takes to start.
    backlog_target_per_instance: float = 200.0
    invocation_timeout_seconds: int = 600  # one photo takes ~1 s; 10 min means a stuck container
    request_ttl_seconds: int = MAX_REQUEST_TTL_SECONDS  # a queued request expires (error notification) after this
    max_attempts: int = 3  # inferences per photo version before its notification is dead-lettered
    scale_from_zero_cooldown_seconds: int = 300  # AWS's documented step-scaling example
    object_retention_days: int = 7  # requests, tickets, responses and failures are deleted after this
    batch_size: int = 10  # notifications per label-writer invocation (each is one S3 read and one write)
    max_concurrency: int = 10  # concurrent label-writer invocations
    max_receive_count: int = 5  # deliveries of a notification before it moves to the DLQ
    function_timeout_seconds: int = 60
    function_memory_mb: int = 256  # no image work: JSON, one S3 read, one DynamoDB write
    backlog_age_alarm_seconds: int = 3_600  # ApproximateAgeOfOldestRequest above this alarms

    def __post_init__(self) -> None:
        _check(
            1 <= self.max_concurrent_invocations_per_instance <= MAX_CONCURRENT_INVOCATIONS_LIMIT,
            "max_concurrent_invocations_per_instance",
            f"must be 1..{MAX_CONCURRENT_INVOCATIONS_LIMIT}, got {self.max_concurrent_invocations_per_instance}",
        )
        _check(self.backlog_target_per_instance > 0, "backlog_target_per_instance", "must be > 0")
        _check(
            1 <= self.invocation_timeout_seconds <= MAX_INVOCATION_TIMEOUT_SECONDS,
            "invocation_timeout_seconds",
            f"must be 1..{MAX_INVOCATION_TIMEOUT_SECONDS} (SageMaker's limit), "
            f"got {self.invocation_timeout_seconds}",
        )
        _check(
            MIN_REQUEST_TTL_SECONDS <= self.request_ttl_seconds <= MAX_REQUEST_TTL_SECONDS,
            "request_ttl_seconds",
            f"must be {MIN_REQUEST_TTL_SECONDS}..{MAX_REQUEST_TTL_SECONDS} (SageMaker's limits), "
            f"got {self.request_ttl_seconds}",
        )
        _check(1 <= self.max_attempts <= 10, "max_attempts", f"must be 1..10, got {self.max_attempts}")
        _check(self.scale_from_zero_cooldown_seconds >= 0, "scale_from_zero_cooldown_seconds", "must be >= 0")
        # Tickets must outlive every answer that can still come, or the writer cannot place it.
        lifetime_days = -(
            -(self.request_ttl_seconds + self.invocation_timeout_seconds) * self.max_attempts // 86_400
        )
        _check(
            self.object_retention_days >= lifetime_days + 1,
            "object_retention_days",
            f"must be >= {lifetime_days + 1}: a request may be answered up to {self.max_attempts} x "
            f"(request_ttl_seconds + invocation_timeout_seconds) after it was written, got "
            f"{self.object_retention_days}",
        )
        _check(
            1 <= self.batch_size <= constants.SQS_MAX_BATCH_SIZE,
            "batch_size",
            f"must be 1..{constants.SQS_MAX_BATCH_SIZE}, got {self.batch_size}",
        )
        _check(
            constants.ESM_MIN_MAX_CONCURRENCY <= self.max_concurrency <= constants.ESM_MAX_MAX_CONCURRENCY,
            "max_concurrency",
            f"must be {constants.ESM_MIN_MAX_CONCURRENCY}..{constants.ESM_MAX_MAX_CONCURRENCY}, "
            f"got {self.max_concurrency}",
        )
        _check(
            1 <= self.max_receive_count <= constants.SQS_MAX_RECEIVE_COUNT,
            "max_receive_count",
            f"must be 1..{constants.SQS_MAX_RECEIVE_COUNT}, got {self.max_receive_count}",
        )
        _check(
            1 <= self.function_timeout_seconds <= constants.LAMBDA_MAX_TIMEOUT_SECONDS,
            "function_timeout_seconds",
            f"must be 1..{constants.LAMBDA_MAX_TIMEOUT_SECONDS}",
        )
        _check(
            constants.LAMBDA_MIN_MEMORY_MB <= self.function_memory_mb <= constants.LAMBDA_MAX_MEMORY_MB,
            "function_memory_mb",
            f"must be {constants.LAMBDA_MIN_MEMORY_MB}..{constants.LAMBDA_MAX_MEMORY_MB}",
        )
        _check(self.backlog_age_alarm_seconds >= 60, "backlog_age_alarm_seconds", "must be >= 60")


# EventBridge Scheduler expressions (Scheduler User Guide, "Schedule types"): rate(value unit) with a singular unit
# for 1 and a plural one otherwise, or cron(six fields).
_RATE_RE = re.compile(r"^rate\((?P<value>[1-9]\d*) (?P<unit>minute|minutes|hour|hours|day|days)\)$")
_CRON_RE = re.compile(r"^cron\(\S+( \S+){5}\)$")
_UNIT_HOURS = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}
# A window takes at most this share of max_hosts x throughput x max_job_minutes: the rest is start-up (instance,
# image, model, engine) and slack for hosts slower than photos_per_hour_per_host.
WINDOW_FILL = 0.8


@dataclass(frozen=True)
class ScheduledLabellingConfig:
    """`photo_labeler.scheduled`: used only with `endpoint.mode: "scheduled"` (docs/scheduled-mode.md)."""

    schedule: str = (
        "rate(6 hours)"  # the regular windows (EventBridge Scheduler); a photo waits one window at most
    )
    window_interval_hours: float | None = (
        None  # hours between regular windows; read from rate(), required for cron()
    )
    # PENDING photos that start a window early: ~2 host-hours of work, so start-up stays a small share of it.
    backlog_threshold: int = 10_000
    backlog_check_minutes: int = 15  # how often the backlog is counted (and a missed window is caught up)
    instance_type: str = "ml.g5.xlarge"  # the endpoint's GPU (1x A10G): the seed's throughput holds
    max_hosts: int = 4  # instances one job may use; raise it for a backfill deadline
    # Sizing throughput per host: the seed's 674 s per 1,000 photos on one ml.g5.xlarge (~5,340 an hour).
    photos_per_hour_per_host: int = 5_300
    target_job_minutes: int = 60  # hosts = ceil(photos / (throughput x target)), clamped to 1..max_hosts
    max_job_minutes: int = 330  # MaxRuntimeInSeconds; 5.5 h ends before the next 6-hourly window
    use_spot: bool = True  # managed Spot (EnableManagedSpotTraining)
    spot_wait_minutes: int = 60  # extra time Spot may take (capacity, interruptions) before the on-demand fallback
    on_demand_fallback: bool = True  # the rest of the window runs on-demand after spot_wait_minutes
    photos_per_shard: int = 2_000  # manifest lines per shard file; ShardedByS3Key gives each host whole shards
    batch_size: int = 64  # photos per engine call and per checkpoint: at most this many are inferred twice
    volume_size_gb: int = 50  # the job's EBS volume: the model streams from S3 (FastFile), no 15 GB copy
    work_retention_days: int = 14  # manifests and checkpoints under windows/ are deleted after this
    pending_age_alarm_hours: float | None = None  # alarm above this wait; default: two window intervals

    def __post_init__(self) -> None:
        rate = _RATE_RE.match(self.schedule)
        _check(
            bool(rate or _CRON_RE.match(self.schedule)),
            "schedule",
            f"must be an EventBridge Scheduler rate(...) or cron(...) expression, got {self.schedule!r}",
        )
        if rate:
            singular = rate["value"] == "1"
            _check(
                rate["unit"].endswith("s") != singular,
                "schedule",
                f"rate(1 ...) takes a singular unit and larger values a plural one, got {self.schedule!r}",
            )
        else:
            _check(
                self.window_interval_hours is not None,
                "window_interval_hours",
                "must be set with a cron() schedule (hours between two of its windows: the alarm and the catch-up "
                "of a missed window use it)",
            )
        if self.window_interval_hours is not None:
            _check(self.window_interval_hours > 0, "window_interval_hours", "must be > 0")
        _check(self.backlog_threshold >= 1, "backlog_threshold", f"must be >= 1, got {self.backlog_threshold}")
        # The pending-age alarm evaluates two checks, and CloudWatch caps an alarm's evaluation range at one day.
        _check(1 <= self.backlog_check_minutes <= 720, "backlog_check_minutes", "must be 1..720")
        _check(
            bool(_INSTANCE_TYPE_RE.match(self.instance_type)),
            "instance_type",
            f"must be a SageMaker training instance type like ml.g5.xlarge, got {self.instance_type!r}",
        )
        _check(1 <= self.max_hosts <= 100, "max_hosts", f"must be 1..100, got {self.max_hosts}")
        _check(self.photos_per_hour_per_host >= 1, "photos_per_hour_per_host", "must be >= 1")
        _check(self.target_job_minutes >= 1, "target_job_minutes", "must be >= 1")
        _check(
            self.target_job_minutes <= self.max_job_minutes <= _MAX_RUNTIME // 60,
            "max_job_minutes",
            f"must be target_job_minutes ({self.target_job_minutes})..{_MAX_RUNTIME // 60}, got "
            f"{self.max_job_minutes}",
        )
        _check(self.spot_wait_minutes >= 0, "spot_wait_minutes", "must be >= 0")
        _check(
            (self.max_job_minutes + self.spot_wait_minutes) * 60 <= _MAX_RUNTIME,
            "spot_wait_minutes",
            f"max_job_minutes + spot_wait_minutes must stay within {_MAX_RUNTIME // 60} (MaxWaitTimeInSeconds)",
        )
        if self.on_demand_fallback:
            _check(self.use_spot, "on_demand_fallback", "only applies with use_spot: true")
        _check(1 <= self.photos_per_shard <= 1_000_000, "photos_per_shard", "must be 1..1000000")
        _check(1 <= self.batch_size <= 4096, "batch_size", f"must be 1..4096, got {self.batch_size}")
        _check(1 <= self.volume_size_gb <= 16384, "volume_size_gb", f"must be 1..16384, got {self.volume_size_gb}")
        _check(self.work_retention_days >= 1, "work_retention_days", "must be >= 1")
        if self.pending_age_alarm_hours is not None:
            _check(self.pending_age_alarm_hours > 0, "pending_age_alarm_hours", "must be > 0")

    @property
    def window_hours(self) -> float:
        """Hours between two regular windows."""
        if self.window_interval_hours is not None:
            return self.window_interval_hours
        rate = _RATE_RE.match(self.schedule)
        assert rate is not None  # a cron() schedule needs window_interval_hours (checked above)
        return int(rate["value"]) * _UNIT_HOURS[rate["unit"].rstrip("s")]

    @property
    def pending_alarm_seconds(self) -> int:
        """The wait that raises the alarm: a photo missed two windows."""
        hours = self.pending_age_alarm_hours if self.pending_age_alarm_hours is not None else 2 * self.window_hours
        return int(hours * 3600)

    @property
    def catch_up_seconds(self) -> int:
        """A backlog check starts a window when the oldest photo waited this long (a regular one was missed)."""
        return int(self.window_hours * 3600) + self.backlog_check_minutes * 60

    @property
    def max_photos_per_window(self) -> int:
        """The most photos one window takes (oldest first); the rest wait for the next window."""
        per_host = self.photos_per_hour_per_host * self.max_job_minutes / 60 * WINDOW_FILL
        return max(1, int(self.max_hosts * per_host))

    def plan_settings(self) -> dict[str, int]:
        """What a window's plan step is given (lambda/window_core.WindowSettings): the state machine passes it."""
        return {
            "max_photos": self.max_photos_per_window,
            "photos_per_shard": self.photos_per_shard,
            "max_hosts": self.max_hosts,
            "photos_per_hour_per_host": self.photos_per_hour_per_host,
            "target_job_minutes": self.target_job_minutes,
        }

    @property
    def max_wait_seconds(self) -> int:
        """MaxWaitTimeInSeconds of a Spot job: its runtime plus the time Spot may take."""
        return (self.max_job_minutes + self.spot_wait_minutes) * 60
