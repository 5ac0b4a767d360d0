"""The app's configuration: one frozen, typed, validated object built once in app.py from cdk.json context.

Every section is declared here, as a field of `AppConfig`, in the order of `cdk.json` → `context.photo_labeler`:

    {"account", "region", "name_prefix", "taxonomy_file", "metrics_namespace", "alarm_topic_arn",
     "storage": {...}, "endpoint": {...}, "upload": {...}, "training": {...}, "backfill": {...},
     "review": {...}, "monitoring": {...}, "async_inference": {...}, "scheduled": {...}}

so any tool can read the whole configuration with `AppConfig.from_context(...)` without importing a construct.
Each default lives once, on its field; cdk.json lists the keys a deployer sets and any changed default, nothing
else (tests/stacks/test_config.py holds that).

Any value can be overridden on the command line with a dotted key, e.g.
`npx cdk synth -c photo_labeler.endpoint.model_data_uri=s3://bucket/run-42/model/`.
Unknown keys anywhere fail synth with the full dotted key, so a typo is never silently ignored. Validation errors
name the key (`ConfigError: photo_labeler.endpoint.min_capacity: must be >= 1, got 0`); the converter that reads
JSON and `-c` strings into these dataclasses is stacks/config_parsing.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classification.contract import DEFAULT_CONFIDENCE_THRESHOLD, InvalidTaxonomy, Taxonomy
from stacks import constants
from stacks.config_parsing import ConfigError, apply_overrides, build
from stacks.config_parsing import check as _check
from stacks.config_sections import (
    AsyncInferenceConfig,
    BackfillConfig,
    MonitoringConfig,
    ReviewPageConfig,
    ScheduledLabellingConfig,
    TrainingPipelineConfig,
)
from stacks.lmi_image import UnsupportedImage, default_table

_NAME_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{1,23}$")
_S3_PREFIX_URI_RE = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+/)$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_SNS_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
_INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_UPLOAD_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]+/$")
_METRICS_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9._/#:-]{1,255}$")
# endpoint.mode; async: stacks/async_inference.py; scheduled (no endpoint): stacks/labelling_window.py
ENDPOINT_MODES = ("realtime", "async", "scheduled")
ENDPOINT_NAME_MAX = 63  # CreateEndpoint's EndpointName limit


# --- sections ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StorageConfig:
    """The image bucket, its access-log bucket and the labels table."""

    upload_prefix: str = "uploads/"  # new photos land here; only this prefix triggers labelling
    noncurrent_version_expiration_days: int = 30  # overwritten/deleted photos are kept this long, then purged
    access_log_retention_days: int = 365

    def __post_init__(self) -> None:
        _check(
            bool(_UPLOAD_PREFIX_RE.match(self.upload_prefix)) and not self.upload_prefix.startswith("/"),
            "upload_prefix",
            f"must be an S3 key prefix ending in '/' without a leading '/', got {self.upload_prefix!r}",
        )
        _check(self.noncurrent_version_expiration_days >= 1, "noncurrent_version_expiration_days", "must be >= 1")
        _check(self.access_log_retention_days >= 1, "access_log_retention_days", "must be >= 1")


@dataclass(frozen=True)
class EndpointSettings:
    """The SageMaker model, endpoint config, endpoint and its autoscaling."""

    # s3://bucket/prefix/ of an uncompressed model directory (the training job's output). None: no endpoint is
    # deployed yet; uploads wait in the queue (see UploadPathConfig) until a later deploy sets it.
    model_data_uri: str | None = None
    instance_type: str = "ml.g5.xlarge"
    lmi_image_version: str = "0.38.0"  # a key of stacks/data/djl_lmi_images.json
    min_capacity: int = 1
    max_capacity: int = 4
    # Target of the high-resolution ConcurrentRequestsPerModel metric: in-flight requests per instance. ~6 keeps
    # one A10G's prefill-bound vLLM busy (the seed saturated at concurrency 8) without queueing latency.
    target_concurrent_requests_per_model: float = 6.0
    scale_out_cooldown_seconds: int = 60
    scale_in_cooldown_seconds: int = 600  # slower than scale-out: a new g5 takes minutes to load the model
    container_startup_timeout_seconds: int = 1800  # must cover LMI's option.model_loading_timeout
    model_data_download_timeout_seconds: int = 1200  # ~15 GB of bf16 weights from S3
    # How every model change reaches the endpoint, from `cdk deploy` or a pipeline rollout (stacks/rollout.py).
    rollout_canary_percent: int = 0  # 0: all at once; 1-50: canary share of instances (needs >= 2 instances)
    rollout_canary_wait_seconds: int = 600  # canary only: how long the canary takes traffic before the rest
    rollout_bake_seconds: int = 900  # alarms are watched this long on the new fleet before the old one goes
    rollout_timeout_seconds: int = 10800  # the whole blue/green deployment, including loading 15 GB of weights
    rollback_5xx_errors_per_minute: int = 5  # Invocation5XXErrors per minute that roll a deployment back
    rollback_p90_model_latency_seconds: float = 30.0  # ModelLatency p90 that rolls a deployment back
    # "realtime": InvokeEndpoint, the Lambda waits for each answer. "async": SageMaker Asynchronous Inference
    # (S3 request in, notification out, scales to zero with min_capacity 0); see README "Async endpoint mode".
    # "scheduled": no endpoint; photos wait PENDING for a window's Spot labelling job (docs/scheduled-mode.md).
    mode: str = "realtime"

    def __post_init__(self) -> None:
        _check(
            self.mode in ENDPOINT_MODES,
            "mode",
            f"must be one of {', '.join(repr(m) for m in ENDPOINT_MODES)}, got {self.mode!r}",
        )
        if self.model_data_uri is not None:
            _check(
                bool(_S3_PREFIX_URI_RE.match(self.model_data_uri)),
                "model_data_uri",
                f"must be an S3 prefix like s3://bucket/path/to/model/ (trailing /), got {self.model_data_uri!r}",
            )
        _check(
            bool(_INSTANCE_TYPE_RE.match(self.instance_type)),
            "instance_type",
            f"must be a SageMaker instance type like ml.g5.xlarge, got {self.instance_type!r}",
        )
        _check(bool(self.lmi_image_version), "lmi_image_version", "must not be empty")
        # Real-time endpoints cannot scale a variant to zero (that needs inference components); async ones can.
        if self.mode == "async":
            _check(self.min_capacity >= 0, "min_capacity", f"must be >= 0, got {self.min_capacity}")
            _check(self.max_capacity >= 1, "max_capacity", f"must be >= 1, got {self.max_capacity}")
        else:
            _check(
                self.min_capacity >= 1,
                "min_capacity",
                f"must be >= 1, got {self.min_capacity} (only endpoint.mode 'async' scales to zero)",
            )
        _check(
            self.max_capacity >= self.min_capacity,
            "max_capacity",
            f"must be >= min_capacity ({self.min_capacity}), got {self.max_capacity}",
        )
        _check(
            self.target_concurrent_requests_per_model > 0, "target_concurrent_requests_per_model", "must be > 0"
        )
        _check(self.scale_out_cooldown_seconds >= 0, "scale_out_cooldown_seconds", "must be >= 0")
        _check(
            self.scale_in_cooldown_seconds > self.scale_out_cooldown_seconds,
            "scale_in_cooldown_seconds",
            f"must be longer than scale_out_cooldown_seconds ({self.scale_out_cooldown_seconds}) so the fleet "
            f"does not shrink while new instances are still loading, got {self.scale_in_cooldown_seconds}",
        )
        _check(
            60 <= self.container_startup_timeout_seconds <= constants.SAGEMAKER_MAX_STARTUP_TIMEOUT_SECONDS,
            "container_startup_timeout_seconds",
            f"must be 60..{constants.SAGEMAKER_MAX_STARTUP_TIMEOUT_SECONDS}",
        )
        _check(
            60 <= self.model_data_download_timeout_seconds <= constants.SAGEMAKER_MAX_DOWNLOAD_TIMEOUT_SECONDS,
            "model_data_download_timeout_seconds",
            f"must be 60..{constants.SAGEMAKER_MAX_DOWNLOAD_TIMEOUT_SECONDS}",
        )
        self._check_rollout()

    def _check_rollout(self) -> None:
        _check(
            0 <= self.rollout_canary_percent <= constants.CANARY_MAX_PERCENT,
            "rollout_canary_percent",
            f"must be 0 (all at once) or 1..{constants.CANARY_MAX_PERCENT}, got {self.rollout_canary_percent}",
        )
        for key in ("rollout_canary_wait_seconds", "rollout_bake_seconds"):
            value = getattr(self, key)
            wait_max = constants.ROLLOUT_WAIT_MAX_SECONDS
            _check(0 <= value <= wait_max, key, f"must be 0..{wait_max}, got {value}")
        low, high = constants.ROLLOUT_TIMEOUT_RANGE
        _check(
            low <= self.rollout_timeout_seconds <= high,
            "rollout_timeout_seconds",
            f"must be {low}..{high} (SageMaker's MaximumExecutionTimeoutInSeconds), got "
            f"{self.rollout_timeout_seconds}",
        )
        _check(self.rollback_5xx_errors_per_minute >= 1, "rollback_5xx_errors_per_minute", "must be >= 1")
        _check(self.rollback_p90_model_latency_seconds > 0, "rollback_p90_model_latency_seconds", "must be > 0")


@dataclass(frozen=True)
class UploadPathConfig:
    """S3 notification → SQS → labeller Lambda → endpoint → labels table."""

    # Matched against the object key; must define a named group `hotel_id` (docs/interfaces.md).
    hotel_id_pattern: str = r"^uploads/(?P<hotel_id>[^/]+)/"
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD  # a fine-tune's answer below it is NEEDS_REVIEW
    # A base-profile model's answer (docs/day-one.md) is LABELED at this margin or more; None sends every one to
    # review. Set it from `training_job.evaluate`'s review-share table on hand-labelled photos.
    base_margin_threshold: float | None = None
    batch_size: int = 4  # records per invocation; each may wait up to ~60 s on the endpoint
    # Concurrent invocations = endpoint requests in flight (records of a batch are labelled one after another).
    # endpoint.max_capacity 4 x target_concurrent_requests_per_model 6 = 24: the fewest in flight that let target
    # tracking drive the whole fleet (12 reach ceil(12 / 6) = 2 instances, ~192,000 photos a day); beyond it each
    # request only waits (Little's law). With backfill.max_concurrency 8, 32 in flight: on the one ml.g5.xlarge a
    # deployment starts with (~0.67 s of prefill per photo) the last waits ~22 s, under the 30-s p90 rollback
    # alarm and the 60-s invoke timeout. Synth checks upload + backfill <= endpoint.max_capacity x
    # option.max_rolling_batch_size (stacks/endpoint_load.py). Reasoning: README, `tools.cost_estimate sizing`.
    max_concurrency: int = 24
    max_receive_count: int = 5  # deliveries before a message moves to the DLQ
    # Holds 2 worst-case records (constants.LABELLER_RECORD_WORST_CASE_SECONDS); the handler defers the rest of a
    # batch to SQS when the next one no longer fits, which spends a receive (checked against max_receive_count).
    function_timeout_seconds: int = 300
    # Worst-case peak 495 MB (runtime 30 + imports 58 + a 50-MB object + a 40-MP decode, scaled from
    # benchmarks/bench_normalize.py's 107 MB at 12 MP) x 1.25, in 64-MB steps. Less CPU than 1,024 MB (0.36 vCPU),
    # but the time spent waiting on the endpoint dominates the billed GB-s.
    function_memory_mb: int = 640

    def __post_init__(self) -> None:
        try:
            compiled = re.compile(self.hotel_id_pattern)
        except re.error as error:
            raise ConfigError("hotel_id_pattern", f"is not a valid regular expression: {error}") from error
        _check(
            "hotel_id" in compiled.groupindex,
            "hotel_id_pattern",
            f"must define a named group (?P<hotel_id>...), got {self.hotel_id_pattern!r}",
        )
        _check(0.0 <= self.confidence_threshold <= 1.0, "confidence_threshold", "must be between 0 and 1")
        if self.base_margin_threshold is not None:
            _check(0.0 <= self.base_margin_threshold <= 1.0, "base_margin_threshold", "must be between 0 and 1")
        _check(
            1 <= self.batch_size <= constants.SQS_MAX_BATCH_SIZE,
            "batch_size",
            f"must be 1..{constants.SQS_MAX_BATCH_SIZE}, got {self.batch_size}",
        )
        _check(
            constants.ESM_MIN_MAX_CONCURRENCY <= self.max_concurrency <= constants.ESM_MAX_MAX_CONCURRENCY,
            "max_concurrency",
            f"must be {constants.ESM_MIN_MAX_CONCURRENCY}..{constants.ESM_MAX_MAX_CONCURRENCY} (Lambda's limits "
            f"for an SQS event source), got {self.max_concurrency}",
        )
        _check(
            1 <= self.max_receive_count <= constants.SQS_MAX_RECEIVE_COUNT,
            "max_receive_count",
            f"must be 1..{constants.SQS_MAX_RECEIVE_COUNT}, got {self.max_receive_count}",
        )
        # The queue's visibility timeout is 6x this and SQS caps visibility at 12 h; Lambda caps at 900 s.
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
        worst = constants.LABELLER_RECORD_WORST_CASE_SECONDS
        _check(
            self.function_timeout_seconds >= worst,
            "function_timeout_seconds",
            f"{self.function_timeout_seconds} s cannot finish one worst-case record ({worst} s: two endpoint "
            f"attempts of 65 s plus S3/DynamoDB); must be >= {worst}",
        )
        # With the endpoint at its worst every invocation finishes `per_invocation` records and defers the rest of
        # the batch, each deferral spending a receive: the last record of a batch must still get its own attempt.
        per_invocation = self.function_timeout_seconds // worst
        receives_needed = -(-self.batch_size // per_invocation)
        _check(
            self.max_receive_count >= receives_needed,
            "max_receive_count",
            f"{self.max_receive_count} lets a healthy record reach the DLQ: with batch_size {self.batch_size} and "
            f"function_timeout_seconds {self.function_timeout_seconds} ({per_invocation} worst-case record(s) of "
            f"{worst} s per invocation) a record may be deferred {receives_needed - 1} time(s); must be >= "
            f"{receives_needed} (or raise function_timeout_seconds / lower batch_size)",
        )


def endpoint_name(name_prefix: str, endpoint: EndpointSettings) -> str:
    """`<name_prefix>-llava-<mode>-<instance type>`, e.g. `photo-labeler-llava-realtime-g5-xlarge`.

    SageMaker refuses to update an endpoint in place when the new endpoint config adds or removes
    AsyncInferenceConfig (endpoint.mode) or changes the instance type of a variant that autoscaling targets
    (SageMaker Developer Guide, "Update endpoints that use auto scaling": the UpdateEndpoint call fails). With a
    fixed name CloudFormation turns such a change into that failing UpdateEndpoint and rolls the stack back.
    EndpointName is create-only in AWS::SageMaker::Endpoint, so with both in the name the same deploy creates a new
    endpoint, points the Lambda environment, IAM, scaling target, alarms, dashboard and training pipeline at it,
    and deletes the old one. Every `endpoint.mode` value is its own name; a model change keeps the name (a
    blue/green update in place, stacks/rollout.py).
    """
    instance = endpoint.instance_type.removeprefix("ml.").replace(".", "-")
    return f"{name_prefix}-llava-{endpoint.mode}-{instance}"


# --- the app config ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppConfig:
    """Everything the app needs, validated. Build it with `AppConfig.from_context` (app.py) or directly (tests)."""

    # Leave both unset for an environment-agnostic template (deploy to any region of the image table).
    account: str | None = None
    region: str | None = None
    name_prefix: str = "photo-labeler"  # stack name, endpoint name and resource name prefix
    taxonomy_file: str = "classification/taxonomy.json"  # relative to the project root; bundled into the Lambda
    metrics_namespace: str = "HotelPhotoLabeler"  # CloudWatch namespace of the Lambda's EMF metrics
    # Existing SNS topic for alarms; None creates an encrypted topic in the stack.
    alarm_topic_arn: str | None = None
    storage: StorageConfig = field(default_factory=StorageConfig)
    endpoint: EndpointSettings = field(default_factory=EndpointSettings)
    upload: UploadPathConfig = field(default_factory=UploadPathConfig)
    training: TrainingPipelineConfig = field(default_factory=TrainingPipelineConfig)
    backfill: BackfillConfig = field(default_factory=BackfillConfig)
    review: ReviewPageConfig = field(default_factory=ReviewPageConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    async_inference: AsyncInferenceConfig = field(default_factory=AsyncInferenceConfig)
    scheduled: ScheduledLabellingConfig = field(default_factory=ScheduledLabellingConfig)

    def __post_init__(self) -> None:
        if self.account is not None:
            _check(bool(_ACCOUNT_RE.match(self.account)), "account", f"must be 12 digits, got {self.account!r}")
        if self.region is not None:
            _check(bool(_REGION_RE.match(self.region)), "region", f"is not an AWS region name: {self.region!r}")
        _check(
            bool(_NAME_PREFIX_RE.match(self.name_prefix)),
            "name_prefix",
            f"must be 2-24 characters of a-z, 0-9 and '-', starting with a letter, got {self.name_prefix!r}",
        )
        _check(
            bool(_METRICS_NAMESPACE_RE.match(self.metrics_namespace))
            and not self.metrics_namespace.startswith("AWS/"),
            "metrics_namespace",
            f"must be a custom CloudWatch namespace (not AWS/...), got {self.metrics_namespace!r}",
        )
        if self.alarm_topic_arn is not None:
            _check(
                bool(_SNS_ARN_RE.match(self.alarm_topic_arn)),
                "alarm_topic_arn",
                f"must be an SNS topic ARN, got {self.alarm_topic_arn!r}",
            )
        self._check_taxonomy()
        self._check_image()
        self._check_review_region()
        _check(
            len(self.endpoint_name) <= ENDPOINT_NAME_MAX,
            "name_prefix",
            f"makes the endpoint name {self.endpoint_name!r} longer than SageMaker's {ENDPOINT_NAME_MAX} "
            "characters; shorten name_prefix",
        )

    def _check_taxonomy(self) -> None:
        path = self.taxonomy_path
        _check(
            not Path(self.taxonomy_file).is_absolute() and constants.PROJECT_ROOT in path.parents,
            "taxonomy_file",
            f"must be a path inside the project (it is bundled into the Lambda), got {self.taxonomy_file!r}",
        )
        try:
            Taxonomy.load(path)
        except InvalidTaxonomy as error:
            raise ConfigError("taxonomy_file", str(error)) from error

    def _check_image(self) -> None:
        table = default_table()
        version = self.endpoint.lmi_image_version
        try:
            table.release(version)
        except UnsupportedImage as error:
            raise ConfigError("endpoint.lmi_image_version", str(error)) from error
        if self.region is not None:
            try:
                table.account(version, self.region)
            except UnsupportedImage as error:
                raise ConfigError("region", str(error)) from error

    def _check_review_region(self) -> None:
        # WAF's CreateWebACL: "To work with CloudFront, you must also specify the Region US East (N. Virginia)".
        # An unpinned template may be deployed anywhere, and CloudFormation would fail late and roll back.
        if self.review.enabled and self.review.waf:
            _check(
                self.region == constants.CLOUDFRONT_REGION,
                "review.waf",
                f"creates a CLOUDFRONT-scope web ACL, which AWS accepts only in {constants.CLOUDFRONT_REGION}; "
                f"this stack's region is {self.region or 'not pinned'}: set photo_labeler.region (and account) "
                f"to {constants.CLOUDFRONT_REGION}, or create the web ACL there and set review.web_acl_arn",
            )

    @property
    def endpoint_name(self) -> str:
        """The SageMaker endpoint's name (`endpoint_name`): it changes with whatever SageMaker cannot update."""
        return endpoint_name(self.name_prefix, self.endpoint)

    @property
    def taxonomy_path(self) -> Path:
        return (constants.PROJECT_ROOT / self.taxonomy_file).resolve()

    @property
    def taxonomy(self) -> Taxonomy:
        return Taxonomy.load(self.taxonomy_path)

    @classmethod
    def from_context(cls, raw: Any, overrides: Mapping[str, Any] | None = None) -> AppConfig:
        """Parse the context object, applying `-c photo_labeler.a.b=value` overrides first."""
        root = constants.CONTEXT_KEY
        if raw is None:
            raw = {}
        if isinstance(raw, str):  # `-c photo_labeler='{"...": ...}'` arrives as a string
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as error:
                raise ConfigError(root, f"is not a JSON object: {error}") from error
        if not isinstance(raw, Mapping):
            raise ConfigError(root, f"must be an object, got {type(raw).__name__}")
        return build(cls, apply_overrides(dict(raw), overrides or {}), root)
