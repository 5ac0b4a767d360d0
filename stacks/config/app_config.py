"""The app's configuration: one frozen, typed, validated object built once in app.py from cdk.json context.

Every section is declared here, as a field of `AppConfig`, in the order of `cdk.json` → `context.photo_labeler`:

    {"account", "region", "name_prefix", "taxonomy_file", "metrics_namespace", "alarm_topic_arn",
     "storage": {...}, "endpoint": {...}, "upload": {...}, "training": {...}, "backfill": {...},
     "review": {...}, "monitoring": {...}, "async_inference": {...}, "scheduled": {...}}

so any tool can read the whole configuration with `AppConfig.from_context(...)` without importing a construct.
Each default lives once, on its field, with the rule its value must meet and its description (the docstring
under it; stacks/config/fields.py): docs/reference/configuration.md is generated from them. cdk.json lists the
keys a deployer sets and any changed default, nothing else (tests/stacks/config/test_config.py holds that).

Any value can be overridden on the command line with a dotted key, e.g.
`npx cdk synth -c photo_labeler.endpoint.model_data_uri=s3://bucket/run-42/model/`.
Unknown keys anywhere fail synth with the full dotted key, so a typo is never silently ignored. Validation errors
name the key (`ConfigError: photo_labeler.endpoint.min_capacity: must be >= 1, got 0`); the converter that reads
JSON and `-c` strings into these dataclasses is stacks/config/parsing.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classification.contract import DEFAULT_CONFIDENCE_THRESHOLD, InvalidTaxonomy, Taxonomy
from stacks.common import constants
from stacks.common.lmi_image import UnsupportedImage, default_table
from stacks.config.fields import BARE, Bounds, Matches, OneOf, check_fields, setting
from stacks.config.fields import RULE as RULE  # the field metadata key of a rule, for the reference page
from stacks.config.parsing import ConfigError, apply_overrides, build
from stacks.config.parsing import check as _check
from stacks.config.sections import (
    AsyncInferenceConfig,
    BackfillConfig,
    MonitoringConfig,
    ReviewPageConfig,
    ScheduledLabellingConfig,
    TrainingPipelineConfig,
)

# endpoint.mode; async: stacks/serving/async_inference.py; scheduled (no endpoint): stacks/labelling/window.py
ENDPOINT_MODES = ("realtime", "async", "scheduled")
ENDPOINT_NAME_MAX = 63  # CreateEndpoint's EndpointName limit
_INSTANCE_TYPE = r"ml\.[a-z0-9]+\.[a-z0-9]+"


# --- sections ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StorageConfig:
    """`photo_labeler.storage`: the image bucket, its access-log bucket and the labels table."""

    upload_prefix: str = setting(
        "uploads/",
        Matches(r"(?!/)[A-Za-z0-9!_.*'()/-]+/", "an S3 key prefix ending in '/' without a leading '/'"),
    )
    """New photos land here: only objects under it are labelled."""
    noncurrent_version_expiration_days: int = setting(30, Bounds(1, template=BARE))
    """Overwritten or deleted photo versions are kept this long, then purged."""
    access_log_retention_days: int = setting(365, Bounds(1, template=BARE))
    """How long the image bucket's server access logs are kept."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class EndpointSettings:
    """`photo_labeler.endpoint`: the SageMaker model, endpoint config, endpoint and its autoscaling."""

    model_data_uri: str | None = setting(
        None,
        Matches(
            r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+/",
            "an S3 prefix like s3://bucket/path/to/model/ (trailing /)",
        ),
    )
    """`s3://bucket/prefix/` of a trained, uncompressed model directory (the training job's output): pins the
    served model, and wins over the registry. Null: no endpoint is deployed yet (uploads wait in the queue) unless
    `training.serve_registered_model` serves the registry's model."""
    instance_type: str = setting(
        "ml.g5.xlarge", Matches(_INSTANCE_TYPE, "a SageMaker instance type like ml.g5.xlarge")
    )
    """The endpoint's instance type. A change replaces the endpoint (its name carries it)."""
    lmi_image_version: str = "0.38.0"
    """DJL LMI release: a key of `stacks/common/data/djl_lmi_images.json` (checked, with the pinned region; which
    vLLM each runs: [serving](../serving.md))."""
    min_capacity: int = 1
    """Fewest instances autoscaling keeps: >= 1 (real-time endpoints cannot scale a variant to zero); 0 is
    allowed with `mode: async`."""
    max_capacity: int = 4
    """Most instances autoscaling starts: >= `min_capacity` (and >= 1). With `upload.max_concurrency` and
    `backfill.max_concurrency` it bounds the requests in flight (checked at synth)."""
    target_concurrent_requests_per_model: float = setting(6.0, Bounds(0, low_open=True, template=BARE))
    """Target of the high-resolution `ConcurrentRequestsPerModel` metric: in-flight requests per instance. ~6
    keeps one A10G's prefill-bound vLLM busy (the seed saturated at concurrency 8) without queueing latency."""
    scale_out_cooldown_seconds: int = setting(60, Bounds(0, template=BARE))
    """Seconds between two scale-outs."""
    scale_in_cooldown_seconds: int = 600
    """Seconds between two scale-ins; must be longer than `scale_out_cooldown_seconds` (a new g5 loads the model
    for minutes, and the fleet must not shrink meanwhile)."""
    container_startup_timeout_seconds: int = setting(
        1800, Bounds(60, constants.SAGEMAKER_MAX_STARTUP_TIMEOUT_SECONDS, template=BARE)
    )
    """Start-up health-check limit; must cover LMI's `option.model_loading_timeout` (checked at synth)."""
    model_data_download_timeout_seconds: int = setting(
        1200, Bounds(60, constants.SAGEMAKER_MAX_DOWNLOAD_TIMEOUT_SECONDS, template=BARE)
    )
    """Weight download limit (~15 GB of bf16 weights from S3)."""
    rollout_canary_percent: int = setting(
        0,
        Bounds(0, constants.CANARY_MAX_PERCENT, spelled=f"0 (all at once) or 1..{constants.CANARY_MAX_PERCENT}"),
    )
    """Every model change, from `cdk deploy` or a pipeline rollout, is a blue/green deployment
    ([model lifecycle](../training-pipeline.md#model-lifecycle)): 0 shifts all traffic at once; 1-50 is the
    canary's share of instances (needs `min_capacity` >= 2)."""
    rollout_canary_wait_seconds: int = setting(600, Bounds(0, constants.ROLLOUT_WAIT_MAX_SECONDS))
    """Canary only: how long the canary takes traffic before the rest shifts."""
    rollout_bake_seconds: int = setting(900, Bounds(0, constants.ROLLOUT_WAIT_MAX_SECONDS))
    """How long the rollback alarms are watched on the new fleet before the old one goes."""
    rollout_timeout_seconds: int = setting(
        10800, Bounds(*constants.ROLLOUT_TIMEOUT_RANGE, why="(SageMaker's MaximumExecutionTimeoutInSeconds)")
    )
    """The whole blue/green deployment, including loading 15 GB of weights."""
    rollback_5xx_errors_per_minute: int = setting(5, Bounds(1, template=BARE))
    """`Invocation5XXErrors` a minute, two minutes running, that roll a deployment back."""
    rollback_p90_model_latency_seconds: float = setting(30.0, Bounds(0, low_open=True, template=BARE))
    """`ModelLatency` p90, three minutes running, that rolls a deployment back."""
    mode: str = setting("realtime", OneOf(ENDPOINT_MODES))
    """How photos are labelled. `realtime`: InvokeEndpoint, the Lambda waits for each answer. `async`: SageMaker
    Asynchronous Inference (S3 request in, notification out; scales to zero with `min_capacity` 0;
    [async mode](../async-mode.md)). `scheduled`: no endpoint; photos wait `PENDING` for a window's Spot labelling
    job ([scheduled mode](../scheduled-mode.md), settings in `photo_labeler.scheduled`). A change replaces the
    endpoint."""

    def __post_init__(self) -> None:
        check_fields(self)
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
            self.scale_in_cooldown_seconds > self.scale_out_cooldown_seconds,
            "scale_in_cooldown_seconds",
            f"must be longer than scale_out_cooldown_seconds ({self.scale_out_cooldown_seconds}) so the fleet "
            f"does not shrink while new instances are still loading, got {self.scale_in_cooldown_seconds}",
        )


@dataclass(frozen=True)
class UploadPathConfig:
    """`photo_labeler.upload`: S3 notification → SQS → labeller Lambda → endpoint → labels table."""

    hotel_id_pattern: str = r"^uploads/(?P<hotel_id>[^/]+)/"
    """Regular expression matched against the object key; must define the named group `hotel_id`, stored on every
    item (docs/interfaces.md)."""
    confidence_threshold: float = setting(
        DEFAULT_CONFIDENCE_THRESHOLD, Bounds(0, 1, spelled="between 0 and 1", template=BARE)
    )
    """A fine-tuned model's answer below it is stored `NEEDS_REVIEW`; compared with the
    [grammar-masked confidence](../training.md#what-the-confidence-means)."""
    base_margin_threshold: float | None = setting(None, Bounds(0, 1, spelled="between 0 and 1", template=BARE))
    """A base-profile model's answer ([day one](../day-one.md)) is `LABELED` at this margin or more; null sends
    every one to review. Set it from `training_job.evaluate`'s review-share table on hand-labelled photos."""
    batch_size: int = setting(4, Bounds(1, constants.SQS_MAX_BATCH_SIZE))
    """SQS records per invocation, labelled one after another; each may wait up to ~60 s on the endpoint."""
    # endpoint.max_capacity 4 x target_concurrent_requests_per_model 6 = 24: the fewest in flight that let target
    # tracking drive the whole fleet (12 reach ceil(12 / 6) = 2 instances, ~192,000 photos a day); beyond it each
    # request only waits (Little's law). With backfill.max_concurrency 8, 32 in flight: on the one ml.g5.xlarge a
    # deployment starts with (~0.67 s of prefill per photo) the last waits ~22 s, under the 30-s p90 rollback
    # alarm and the 60-s invoke timeout. Reasoning: docs/cost.md, `tools.cost_estimate sizing`.
    max_concurrency: int = setting(
        24,
        Bounds(
            constants.ESM_MIN_MAX_CONCURRENCY,
            constants.ESM_MAX_MAX_CONCURRENCY,
            why="(Lambda's limits for an SQS event source)",
        ),
    )
    """Concurrent invocations = endpoint requests in flight. 24 = `endpoint.max_capacity` x
    `endpoint.target_concurrent_requests_per_model`, the fewest that scale the endpoint to its whole fleet
    ([sizing](../cost.md#sizing-the-defaults)); with `backfill.max_concurrency` it must fit `endpoint.max_capacity`
    x `option.max_rolling_batch_size` (checked at synth)."""
    max_receive_count: int = setting(5, Bounds(1, constants.SQS_MAX_RECEIVE_COUNT))
    """Deliveries before a message moves to the dead-letter queue; must be >= ceil(`batch_size` / floor(timeout /
    140 s)) so a record deferred in every batch still gets its own attempt (checked)."""
    function_timeout_seconds: int = setting(300, Bounds(1, constants.LAMBDA_MAX_TIMEOUT_SECONDS, template=BARE))
    """Labeller timeout; must hold one worst-case record (140 s: two endpoint attempts of 65 s plus S3 and
    DynamoDB). The queue's visibility timeout is 6x this."""
    # Worst-case peak 495 MB (runtime 30 + imports 58 + a 50-MB object + a 40-MP decode, scaled from
    # benchmarks/bench_normalize.py's 107 MB at 12 MP) x 1.25, in 64-MB steps.
    function_memory_mb: int = setting(
        640, Bounds(constants.LAMBDA_MIN_MEMORY_MB, constants.LAMBDA_MAX_MEMORY_MB, template=BARE)
    )
    """Labeller memory: the measured worst-case peak with a 25 % margin. Less CPU than 1,024 MB, but the
    time spent waiting on the endpoint dominates the billed GB-s."""

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
        check_fields(self)
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
    blue/green update in place, stacks/serving/rollout.py).
    """
    instance = endpoint.instance_type.removeprefix("ml.").replace(".", "-")
    return f"{name_prefix}-llava-{endpoint.mode}-{instance}"


# --- the app config ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppConfig:
    """Everything the app needs, validated. Build it with `AppConfig.from_context` (app.py) or directly (tests)."""

    account: str | None = setting(None, Matches(r"\d{12}", "12 digits"))
    """AWS account to pin the stack to. Leave it and `region` unset for an environment-agnostic template."""
    region: str | None = setting(
        None,
        Matches(
            r"[a-z]{2}(-[a-z]+)+-\d", "an AWS region name like eu-west-1", "is not an AWS region name: {value!r}"
        ),
    )
    """AWS region to pin the stack to; unset, the LMI image is resolved per region at deploy time."""
    name_prefix: str = setting(
        "photo-labeler",
        Matches(r"[a-z][a-z0-9-]{1,23}", "2-24 characters of a-z, 0-9 and '-', starting with a letter"),
    )
    """Stack name and prefix of resource names. The endpoint is `<prefix>-llava-<mode>-<instance type>`: a mode or
    instance-type change replaces it ([deploy checks](../deploy-checks.md#endpoint-replacement))."""
    taxonomy_file: str = "classification/taxonomy.json"
    """The label set: a path inside the project, bundled into the Lambda."""
    metrics_namespace: str = setting(
        "HotelPhotoLabeler",
        Matches(r"(?!AWS/)[A-Za-z0-9._/#:-]{1,255}", "a custom CloudWatch namespace (not AWS/...)"),
    )
    """CloudWatch namespace of the Lambdas' EMF metrics."""
    alarm_topic_arn: str | None = setting(
        None, Matches(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}", "an SNS topic ARN")
    )
    """An existing SNS topic for the alarms (its policy must admit them); null creates an encrypted one."""
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
        check_fields(self)
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
