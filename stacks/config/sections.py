"""The sections of `AppConfig` (stacks/config/app_config.py) for the training pipeline, the backfill, the review
page, monitoring, async inference and scheduled labelling. AppConfig declares every section as one of its fields;
the storage, endpoint and upload sections are defined beside it, these here to keep both files short. Each default
lives once, on its field, with its rule (stacks/config/fields.py) and its description (the docstring under it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stacks.common import constants
from stacks.common.training_image import UnsupportedTrainingImage, default_training_images
from stacks.config.fields import BARE, Bounds, Matches, check_fields, setting
from stacks.config.parsing import ConfigError
from stacks.config.parsing import check as _check

_INSTANCE_TYPE = r"ml\.[a-z0-9]+\.[a-z0-9]+"
_MAX_RUNTIME = constants.SAGEMAKER_MAX_RUNTIME_SECONDS
# The backfill handler stops taking items when less than this is left, so a shorter timeout could not finish even
# one worst-case item.
_HANDLER_TIME_MARGIN_SECONDS = constants.LABELLER_RECORD_WORST_CASE_SECONDS
_BACKFILL_PREFIX = r"([A-Za-z0-9!_.'()/-]+/)?"  # no '*' or '\': used in a StringMatches
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

    instance_type: str = setting(
        "ml.p5.48xlarge", Matches(_INSTANCE_TYPE, "a SageMaker training instance type like ml.p5.48xlarge")
    )
    """Training instance (ml.p5.48xlarge: 8x H100); `training_job/launch.py` spreads over every GPU of every
    host."""
    instance_count: int = setting(1, Bounds(1, "max_instance_count"))
    """Hosts per run when an execution does not ask."""
    max_instance_count: int = setting(4, Bounds(1))
    """The most hosts an execution may ask for with `instance_count`."""
    volume_size_gb: int = setting(500, Bounds(1, 16384))
    """ML storage volume (EBS) per host, for instance types without local NVMe: the base weights (~15 GB), up to
    three ~120-GB ZeRO-3 checkpoints while rotating and the final model. No effect on ml.p5, which uses its own
    NVMe (8 x 3.84 TB)."""
    max_runtime_seconds: int = setting(2 * 24 * 3600, Bounds(1, _MAX_RUNTIME, why="(28 days)"))
    """Training job runtime limit."""
    use_spot: bool = False
    """Managed Spot training; a restart resumes from the S3 checkpoints. P5 Spot capacity is scarce: on by
    choice only."""
    max_wait_seconds: int | None = None
    """Spot only: runtime plus waiting for capacity, `max_runtime_seconds`..28 days; null: twice
    `max_runtime_seconds`."""
    image_version: str = "5.3.0-pytorch2.9.0"
    """Hugging Face PyTorch training image: a key of `stacks/common/data/hf_training_images.json` (checked)."""
    hyperparameters: Mapping[str, Any] = setting({})
    """Default extra `--name value` arguments for `training_job/launch.py` (forwarded to `train.py`), e.g.
    `num_train_epochs`; strings, numbers or booleans. The pipeline's own are reserved."""
    base_model_prefix: str | None = setting(
        None,
        Matches(
            re.escape(constants.BASE_MODELS_PREFIX) + ".*/",
            f"a key prefix under {constants.BASE_MODELS_PREFIX} ending in '/', like "
            f"'{constants.BASE_MODELS_PREFIX}llava-v1.6-mistral-7b-hf/'",
        ),
    )
    """Key prefix in the training bucket with hub-layout base weights, mounted as the `model` channel; null: the
    Hub id of the training config (the job has internet access)."""
    min_accuracy: float = setting(0.9, Bounds(0, 1, low_open=True, spelled="in (0, 1]"))
    """The gate: a validation accuracy below it stops the pipeline before it registers the model."""
    checkpoint_retention_days: int = setting(14, Bounds(1, template=BARE))
    """Lifecycle of `checkpoints/`: ~120 GB each, needed only while a run may resume."""
    serve_registered_model: bool = False
    """The endpoint serves the model registry's model (run the pipeline once first: bootstrap order)."""

    def __post_init__(self) -> None:
        check_fields(self)
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

    @property
    def effective_max_wait_seconds(self) -> int | None:
        if not self.use_spot:
            return None
        return self.max_wait_seconds or min(2 * self.max_runtime_seconds, _MAX_RUNTIME)


@dataclass(frozen=True)
class BackfillConfig:
    """`photo_labeler.backfill`: the Distributed Map over existing photos (deployed together with the endpoint)."""

    source_prefix: str = setting("", Matches(_BACKFILL_PREFIX, "'' or a key prefix ending in '/' without '*'"))
    """Keys the backfill may list and read (`""`: the whole image bucket); a start outside it is refused."""
    hotel_id_pattern: str = r"^[^/]+/(?P<hotel_id>[^/]+)/"
    """Regular expression matched against each key; must define the named group `hotel_id`. The default takes
    the folder after the first one, as in `<any-prefix>/<hotel_id>/<file>`."""
    items_per_batch: int = setting(25, Bounds(1, constants.MAX_ITEMS_PER_BATCH))
    """Photos per Lambda invocation (~100 s of endpoint time at ~4 s a photo)."""
    # Shares the endpoint with upload.max_concurrency: 24 + 8 = 32 in flight keep one ml.g5.xlarge at ~22 s of
    # queueing (~0.67 s a photo), under the 30-s p90 rollback alarm, so a deployment during a backfill is not
    # rolled back by mistake.
    max_concurrency: int = setting(8, Bounds(1, constants.DISTRIBUTED_MAP_MAX_CONCURRENCY))
    """Batches at once = photos in flight on the endpoint; also the most a start may ask for. With
    `upload.max_concurrency` it must fit `endpoint.max_capacity` x `option.max_rolling_batch_size` (checked at
    synth)."""
    tolerated_failure_percentage: float = setting(5.0, Bounds(0, 100))
    """Share of items in failed batches above which the run fails (failed batches: redrive)."""
    retry_attempts: int = setting(5, Bounds(0, 10))
    """Retries of a batch that hit a transient error."""
    retry_interval_seconds: int = setting(30, Bounds(1, template=BARE))
    """First retry wait; doubles each retry, at most 600 s (30 s .. 8 min covers a scale-out)."""
    function_timeout_seconds: int = setting(
        900,
        Bounds(
            _HANDLER_TIME_MARGIN_SECONDS + 60,
            constants.LAMBDA_MAX_TIMEOUT_SECONDS,
            why=f"(the handler keeps {_HANDLER_TIME_MARGIN_SECONDS} s for the last item)",
        ),
    )
    """Backfill Lambda timeout."""
    function_memory_mb: int = setting(
        1024, Bounds(constants.LAMBDA_MIN_MEMORY_MB, constants.LAMBDA_MAX_MEMORY_MB, template=BARE)
    )
    """Backfill Lambda memory."""
    inventory_bucket: str | None = setting(
        None, Matches(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name (not an ARN or URI)")
    )
    """Bucket (name) that receives the image bucket's S3 Inventory reports (CSV); null disables `--manifest`."""
    inventory_prefix: str = setting("", Matches(_BACKFILL_PREFIX, "'' or a key prefix ending in '/' without '*'"))
    """Where in that bucket the reports (`manifest.json` and data files) are."""
    results_retention_days: int = setting(90, Bounds(1, template=BARE))
    """How long the map run's per-batch results and failure lists are kept."""

    def __post_init__(self) -> None:
        check_fields(self)
        try:
            compiled = re.compile(self.hotel_id_pattern)
        except re.error as error:
            raise ConfigError("hotel_id_pattern", f"is not a valid regular expression: {error}") from error
        _check(
            "hotel_id" in compiled.groupindex, "hotel_id_pattern", "must define a named group (?P<hotel_id>...)"
        )


@dataclass(frozen=True)
class ReviewPageConfig:
    """`photo_labeler.review`: the review page for the content team."""

    enabled: bool = True
    """Deploy the review page, its API, user pool and backlog schedule."""
    waf: bool = False
    """Create a CLOUDFRONT-scope web ACL (AWS managed common, known-bad-input and IP-reputation rules, a per-IP
    rate limit). AWS accepts those only in us-east-1: the stack must be pinned there (checked); elsewhere set
    `web_acl_arn` ([WAF](../review-page.md#waf))."""
    web_acl_arn: str | None = setting(
        None,
        Matches(
            r"arn:aws:wafv2:us-east-1:.*",
            "a CLOUDFRONT-scope WAFv2 web ACL ARN (arn:aws:wafv2:us-east-1:...)",
        ),
    )
    """Attach an existing CLOUDFRONT-scope web ACL instead (not both with `waf`)."""
    presigned_url_seconds: int = setting(300, Bounds(60, 3600))
    """How long a photo link on the page works."""
    backlog_probe_minutes: int = setting(15, Bounds(1, 1440))
    """How often the `NEEDS_REVIEW` backlog is counted for the dashboard."""
    lease_seconds: int = setting(300, Bounds(60, 3600))
    """How long a photo handed to a reviewer stays theirs alone, unless they decide it or give it back
    ([leases](../review.md#working-on-the-queue))."""
    domain_name: str | None = setting(
        None,
        Matches(
            r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
            "a lower-case DNS name like review.example.com",
        ),
    )
    """Serve the page on this domain (with `certificate_arn`; both or neither) and the TLSv1.2_2021 security
    policy, which the default *.cloudfront.net certificate cannot have
    ([custom domain](../review-page.md#custom-domain))."""
    # CloudFront serves only ACM certificates of us-east-1 (CloudFront Developer Guide, "Requirements for using
    # SSL/TLS certificates with CloudFront": request or import the certificate in US East (N. Virginia)).
    certificate_arn: str | None = setting(
        None,
        Matches(
            r"arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/[0-9a-f-]{36}",
            "an ACM certificate ARN in us-east-1 (arn:aws:acm:us-east-1:<account>:certificate/<id>)",
            "must be {what}, the only region CloudFront takes certificates from; got {value!r}",
        ),
    )
    """The ACM certificate of `domain_name`, in us-east-1 (the only region CloudFront takes certificates from)."""

    def __post_init__(self) -> None:
        if (self.domain_name is None) != (self.certificate_arn is None):
            missing = "certificate_arn" if self.certificate_arn is None else "domain_name"
            raise ConfigError(missing, "a custom domain needs both review.domain_name and review.certificate_arn")
        _check(
            not (self.waf and self.web_acl_arn),
            "waf",
            "set either waf (create a web ACL) or web_acl_arn (attach one), not both",
        )
        check_fields(self)


@dataclass(frozen=True)
class MonitoringConfig:
    """`photo_labeler.monitoring`: alarm thresholds (alarms go to `alarm_topic_arn` or the stack's topic)."""

    queue_age_alarm_seconds: int = setting(
        900, Bounds(60, constants.QUEUE_RETENTION_DAYS * 86_400, why="(the queue's retention)")
    )
    """The oldest waiting upload older than this, 5 minutes in a row, raises the alarm."""
    stall_alarm_minutes: int = setting(15, Bounds(5, 1440))
    """Nothing processed for this long while the queue never emptied raises the alarm (CloudWatch periods of a
    minute or more are whole minutes, at most a day)."""
    endpoint_5xx_alarm_threshold: int = setting(5, Bounds(1, template=BARE))
    """Endpoint 5xx responses in 5 minutes that raise the alarm."""
    backfill_failed_alarm: bool = True
    """Alarm when a backfill execution fails or times out."""

    def __post_init__(self) -> None:
        check_fields(self)


# InvokeEndpointAsync's limits (API reference): queued at most 6 h, processed at most 1 h.
MAX_REQUEST_TTL_SECONDS = 21_600
MIN_REQUEST_TTL_SECONDS = 60
MAX_INVOCATION_TIMEOUT_SECONDS = 3_600
MAX_CONCURRENT_INVOCATIONS_LIMIT = 1_000  # AsyncInferenceClientConfig.MaxConcurrentInvocationsPerInstance


@dataclass(frozen=True)
class AsyncInferenceConfig:
    """`photo_labeler.async_inference`: used only with `endpoint.mode: "async"`
    (stacks/serving/async_inference.py)."""

    # The container batches them (vLLM continuous batching), so the engine batch of serving.properties is the
    # natural value; more only queue inside the container.
    max_concurrent_invocations_per_instance: int = setting(8, Bounds(1, MAX_CONCURRENT_INVOCATIONS_LIMIT))
    """`ClientConfig.MaxConcurrentInvocationsPerInstance`: requests SageMaker hands one instance at once."""
    backlog_target_per_instance: float = setting(200.0, Bounds(0, low_open=True, template=BARE))
    """Target of `ApproximateBacklogSizePerInstance`: queued requests per instance. ~0.67 s a photo on one g5, so
    200 is ~2 minutes of work per instance, about what a new instance takes to start."""
    invocation_timeout_seconds: int = setting(
        600, Bounds(1, MAX_INVOCATION_TIMEOUT_SECONDS, why="(SageMaker's limit)")
    )
    """One request's processing limit: a photo takes ~1 s, so 10 minutes means a stuck container."""
    request_ttl_seconds: int = setting(
        MAX_REQUEST_TTL_SECONDS,
        Bounds(MIN_REQUEST_TTL_SECONDS, MAX_REQUEST_TTL_SECONDS, why="(SageMaker's limits)"),
    )
    """How long a request may wait in the queue; then it expires as an error notification (and is resubmitted
    up to `max_attempts`)."""
    max_attempts: int = setting(3, Bounds(1, 10))
    """Inferences per photo version before its notification is dead-lettered."""
    scale_from_zero_cooldown_seconds: int = setting(300, Bounds(0, template=BARE))
    """Cooldown of the step policy on `HasBacklogWithoutCapacity` (AWS's documented example)."""
    object_retention_days: int = 7
    """Requests, tickets, responses and failures expire after this; must outlive every answer that can still
    come: >= `max_attempts` x (`request_ttl_seconds` + `invocation_timeout_seconds`) in days, plus one
    (checked)."""
    batch_size: int = setting(10, Bounds(1, constants.SQS_MAX_BATCH_SIZE))
    """Notifications per label-writer invocation (each is one S3 read and one write)."""
    max_concurrency: int = setting(
        10, Bounds(constants.ESM_MIN_MAX_CONCURRENCY, constants.ESM_MAX_MAX_CONCURRENCY)
    )
    """Concurrent label-writer invocations."""
    max_receive_count: int = setting(5, Bounds(1, constants.SQS_MAX_RECEIVE_COUNT))
    """Deliveries of a notification before it moves to its dead-letter queue."""
    function_timeout_seconds: int = setting(60, Bounds(1, constants.LAMBDA_MAX_TIMEOUT_SECONDS, template=BARE))
    """Label writer timeout; its queue's visibility timeout is 6x this."""
    function_memory_mb: int = setting(
        256, Bounds(constants.LAMBDA_MIN_MEMORY_MB, constants.LAMBDA_MAX_MEMORY_MB, template=BARE)
    )
    """Label writer memory: no image work, only JSON, one S3 read and one DynamoDB write."""
    backlog_age_alarm_seconds: int = setting(3_600, Bounds(60, template=BARE))
    """Alarm when the oldest queued request is older than this, 5 minutes running."""

    def __post_init__(self) -> None:
        check_fields(self)
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

    schedule: str = setting(
        "rate(6 hours)",
        Matches(
            _RATE_RE.pattern[1:-1] + "|" + _CRON_RE.pattern[1:-1],
            "an EventBridge Scheduler rate(...) or cron(...) expression",
        ),
    )
    """The regular windows (EventBridge Scheduler); a photo waits one window at most. `rate(1 ...)` takes a
    singular unit and larger values a plural one."""
    window_interval_hours: float | None = setting(None, Bounds(0, low_open=True, template=BARE))
    """Hours between two regular windows: read from `rate()`, required with `cron()` (the alarm and the catch-up
    of a missed window use it)."""
    backlog_threshold: int = setting(10_000, Bounds(1))
    """`PENDING` photos that start a window early: ~2 host-hours of work, so start-up stays a small share."""
    # The pending-age alarm evaluates two checks, and CloudWatch caps an alarm's evaluation range at one day.
    backlog_check_minutes: int = setting(15, Bounds(1, 720, template=BARE))
    """How often the backlog is counted (and a missed window caught up)."""
    instance_type: str = setting(
        "ml.g5.xlarge", Matches(_INSTANCE_TYPE, "a SageMaker training instance type like ml.g5.xlarge")
    )
    """The labelling job's instance: the endpoint's GPU (1x A10G), where the seed's throughput holds."""
    max_hosts: int = setting(4, Bounds(1, 100))
    """Instances one job may use; raise it for a backfill deadline."""
    photos_per_hour_per_host: int = setting(5_300, Bounds(1, template=BARE))
    """Sizing throughput per host: the seed's 674 s per 1,000 photos on one ml.g5.xlarge (~5,340 an hour)."""
    target_job_minutes: int = setting(60, Bounds(1, template=BARE))
    """Hosts = ceil(photos / (throughput x target)), clamped to 1..`max_hosts`."""
    max_job_minutes: int = setting(330, Bounds("target_job_minutes", _MAX_RUNTIME // 60))
    """The job's `MaxRuntimeInSeconds`: 5.5 h ends before the next 6-hourly window. A window takes at most
    `max_hosts` x throughput x 80 % of it (~93,000 photos); the rest wait for the next."""
    use_spot: bool = True
    """Managed Spot (`EnableManagedSpotTraining`)."""
    spot_wait_minutes: int = setting(60, Bounds(0, template=BARE))
    """Extra time Spot may take (capacity, interruptions) before the on-demand fallback: the job's
    `MaxWaitTimeInSeconds` is its runtime plus this, at most 28 days."""
    on_demand_fallback: bool = True
    """The rest of a window runs on-demand after `spot_wait_minutes` (needs `use_spot`)."""
    photos_per_shard: int = setting(2_000, Bounds(1, 1_000_000, template=BARE))
    """Manifest lines per shard file; `ShardedByS3Key` gives each host whole shards."""
    batch_size: int = setting(64, Bounds(1, 4096))
    """Photos per engine call and per checkpoint: at most this many are inferred twice after an interruption."""
    volume_size_gb: int = setting(50, Bounds(1, 16384))
    """The job's EBS volume: the model streams from S3 (FastFile), no 15 GB copy."""
    work_retention_days: int = setting(14, Bounds(1, template=BARE))
    """Manifests, checkpoints and job output under `windows/` are deleted after this."""
    pending_age_alarm_hours: float | None = setting(None, Bounds(0, low_open=True, template=BARE))
    """The pending-age alarm's threshold: a photo waited longer than this; null: two window intervals."""

    def __post_init__(self) -> None:
        rate = _RATE_RE.match(self.schedule)
        check_fields(self)
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
        _check(
            (self.max_job_minutes + self.spot_wait_minutes) * 60 <= _MAX_RUNTIME,
            "spot_wait_minutes",
            f"max_job_minutes + spot_wait_minutes must stay within {_MAX_RUNTIME // 60} (MaxWaitTimeInSeconds)",
        )
        if self.on_demand_fallback:
            _check(self.use_spot, "on_demand_fallback", "only applies with use_spot: true")

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
