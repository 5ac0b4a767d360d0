"""The labeller functions' environment: one contract for the stack that writes it and the Lambda that reads it.

The stack (stacks/labeller_function.py, and stacks/async_inference.py for the label writer) builds a
`LabellerEnvironment` and sets `to_environment()` as the function's variables; the function reads them back with
`LabellerEnvironment.from_environment` (lambda/labeller_core.py, handler.py, async_aws.py, async_core.py). A
variable is named once, here, so the two sides cannot drift apart. docs/interfaces.md describes each variable.

At synth time the string fields may hold CDK tokens (the table's name, the registry's model URI): they pass
through `to_environment()` unchanged and CloudFormation fills them in. Numbers come from the validated app config,
never from tokens, so they are typed here and rendered with `str()`.

Standard library only: this module is bundled into the Lambda (classification/) and imported by the CDK app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from classification.contract import DEFAULT_CONFIDENCE_THRESHOLD

# -- the variable names ---------------------------------------------------------------------------------------
TABLE_NAME = "TABLE_NAME"
ENDPOINT_NAME = "ENDPOINT_NAME"
MODEL_ID = "MODEL_ID"
MODEL_PARAMETER_NAME = "MODEL_PARAMETER_NAME"
CONFIDENCE_THRESHOLD = "CONFIDENCE_THRESHOLD"
BASE_MARGIN_THRESHOLD = "BASE_MARGIN_THRESHOLD"
HOTEL_ID_PATTERN = "HOTEL_ID_PATTERN"
UPLOAD_PREFIX = "UPLOAD_PREFIX"
TAXONOMY_FILE = "TAXONOMY_FILE"
# Read by Powertools itself (Logger, Metrics), written by the stack like the others.
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
ENDPOINT_MODE = "ENDPOINT_MODE"
ASYNC_REQUEST_BUCKET = "ASYNC_REQUEST_BUCKET"
ASYNC_REQUEST_PREFIX = "ASYNC_REQUEST_PREFIX"
ASYNC_REQUEST_TTL_SECONDS = "ASYNC_REQUEST_TTL_SECONDS"
ASYNC_INVOCATION_TIMEOUT_SECONDS = "ASYNC_INVOCATION_TIMEOUT_SECONDS"
ASYNC_MAX_ATTEMPTS = "ASYNC_MAX_ATTEMPTS"

REQUIRED = (TABLE_NAME, ENDPOINT_NAME, MODEL_ID)
REALTIME = "realtime"
ASYNC = "async"
# No endpoint at all: the labellers record PENDING, a window's labelling job labels (docs/scheduled-mode.md).
SCHEDULED = "scheduled"
ENDPOINT_MODES = (REALTIME, ASYNC, SCHEDULED)
# What each mode cannot run without (scheduled mode has no endpoint to name).
REQUIRED_BY_MODE = {
    REALTIME: REQUIRED,
    ASYNC: (*REQUIRED, ASYNC_REQUEST_BUCKET),
    SCHEDULED: (TABLE_NAME, MODEL_ID),
}

# -- what an unset optional variable means ----------------------------------------------------------------------
DEFAULT_HOTEL_ID_PATTERN = r"^[^/]+/(?P<hotel_id>[^/]+)/"  # uploads/<hotel_id>/<file>
DEFAULT_UPLOAD_PREFIX = "uploads/"
DEFAULT_REQUEST_PREFIX = "requests/"


class ConfigError(ValueError):
    """The function's environment cannot configure the labeller."""


@dataclass(frozen=True)
class AsyncEnvironment:
    """endpoint.mode async: where the submitting functions put requests, and SageMaker's limits for them.

    An unset limit (None) is left to lambda/async_core.AsyncSettings' default, which also checks the ranges.
    """

    request_bucket: str
    request_prefix: str = DEFAULT_REQUEST_PREFIX
    request_ttl_seconds: int | None = None
    invocation_timeout_seconds: int | None = None
    max_attempts: int | None = None

    def to_environment(self) -> dict[str, str]:
        environment = {
            ENDPOINT_MODE: ASYNC,
            ASYNC_REQUEST_BUCKET: self.request_bucket,
            ASYNC_REQUEST_PREFIX: self.request_prefix,
        }
        for name, value in (
            (ASYNC_REQUEST_TTL_SECONDS, self.request_ttl_seconds),
            (ASYNC_INVOCATION_TIMEOUT_SECONDS, self.invocation_timeout_seconds),
            (ASYNC_MAX_ATTEMPTS, self.max_attempts),
        ):
            if value is not None:
                environment[name] = str(value)
        return environment

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> AsyncEnvironment:
        """The ASYNC_* variables whatever ENDPOINT_MODE says; an unset bucket reads as "" (checked by
        LabellerEnvironment.from_environment, which knows whether the mode needs one)."""
        prefix = environ.get(ASYNC_REQUEST_PREFIX, DEFAULT_REQUEST_PREFIX)
        if prefix and not prefix.endswith("/"):
            raise ConfigError(f"{ASYNC_REQUEST_PREFIX} must end in '/', got {prefix!r}")
        return cls(
            request_bucket=environ.get(ASYNC_REQUEST_BUCKET, ""),
            request_prefix=prefix,
            request_ttl_seconds=_optional_int(environ, ASYNC_REQUEST_TTL_SECONDS),
            invocation_timeout_seconds=_optional_int(environ, ASYNC_INVOCATION_TIMEOUT_SECONDS),
            max_attempts=_optional_int(environ, ASYNC_MAX_ATTEMPTS),
        )


@dataclass(frozen=True)
class LabellerEnvironment:
    """Every variable a labeller function is given. None = not set: the function's default applies.

    The upload and backfill labellers set all of them (the backfill with an empty UPLOAD_PREFIX when it covers
    the whole bucket); the async label writer leaves HOTEL_ID_PATTERN, UPLOAD_PREFIX and MODEL_PARAMETER_NAME
    unset. `async_inference` set means ENDPOINT_MODE=async; `scheduled` means ENDPOINT_MODE=scheduled, where
    `endpoint_name` is "" (there is no endpoint) and is then not written.
    """

    table_name: str
    endpoint_name: str
    model_id: str  # written to each item; only the fallback when model_parameter_name is set
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    # The base model profiles' routing: answers with at least this margin are LABELED; None sends every answer
    # of a base-profile model to review (classification/model_profile.py).
    base_margin_threshold: float | None = None
    taxonomy_file: str | None = None  # relative to the task root; None: the bundled classification/taxonomy.json
    hotel_id_pattern: str | None = None  # None: DEFAULT_HOTEL_ID_PATTERN
    upload_prefix: str | None = None  # None: DEFAULT_UPLOAD_PREFIX; "" is a prefix too (the whole bucket)
    model_parameter_name: str | None = None  # the model registry parameter, when the endpoint serves it
    service_name: str | None = None
    metrics_namespace: str | None = None
    async_inference: AsyncEnvironment | None = None
    scheduled: bool = False

    def __post_init__(self) -> None:
        if self.scheduled and self.async_inference is not None:
            raise ConfigError("a labeller is either scheduled or async, not both")

    @property
    def endpoint_mode(self) -> str:
        if self.async_inference is not None:
            return ASYNC
        return SCHEDULED if self.scheduled else REALTIME

    def to_environment(self) -> dict[str, str]:
        """The function's `Environment.Variables` (values may be CDK tokens at synth time)."""
        optional = {
            HOTEL_ID_PATTERN: self.hotel_id_pattern,
            UPLOAD_PREFIX: self.upload_prefix,
            TAXONOMY_FILE: self.taxonomy_file,
            POWERTOOLS_SERVICE_NAME: self.service_name,
            POWERTOOLS_METRICS_NAMESPACE: self.metrics_namespace,
            MODEL_PARAMETER_NAME: self.model_parameter_name,
            BASE_MARGIN_THRESHOLD: None if self.base_margin_threshold is None else str(self.base_margin_threshold),
        }
        return {
            TABLE_NAME: self.table_name,
            **({ENDPOINT_NAME: self.endpoint_name} if self.endpoint_name or not self.scheduled else {}),
            MODEL_ID: self.model_id,
            CONFIDENCE_THRESHOLD: str(self.confidence_threshold),
            **{name: value for name, value in optional.items() if value is not None},
            **(self.async_inference.to_environment() if self.async_inference is not None else {}),
            **({ENDPOINT_MODE: SCHEDULED} if self.scheduled else {}),
        }

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], *, require: bool = True) -> LabellerEnvironment:
        """Read the function's environment; ConfigError names the variable that is missing or malformed.

        `require=False` reads an unset TABLE_NAME / ENDPOINT_NAME / MODEL_ID / ASYNC_REQUEST_BUCKET as "" instead
        of refusing it: for readers of the labeller's settings alone (labeller_core.LabellerConfig.from_env),
        where the handler has already checked what it connects to.
        """
        mode = environ.get(ENDPOINT_MODE, REALTIME)
        if mode not in ENDPOINT_MODES:
            raise ConfigError(f"{ENDPOINT_MODE} must be one of {', '.join(ENDPOINT_MODES)}, got {mode!r}")
        if require:
            missing = [name for name in REQUIRED_BY_MODE[mode] if not environ.get(name)]
            if missing:
                raise ConfigError(f"environment variables not set: {', '.join(missing)}")
        threshold_text = environ.get(CONFIDENCE_THRESHOLD, str(DEFAULT_CONFIDENCE_THRESHOLD))
        try:
            threshold = float(threshold_text)
        except ValueError as error:
            raise ConfigError(f"{CONFIDENCE_THRESHOLD} must be a number, got {threshold_text!r}") from error
        margin_text = environ.get(BASE_MARGIN_THRESHOLD) or None
        try:
            margin = None if margin_text is None else float(margin_text)
        except ValueError as error:
            raise ConfigError(f"{BASE_MARGIN_THRESHOLD} must be a number, got {margin_text!r}") from error
        return cls(
            table_name=environ.get(TABLE_NAME, ""),
            endpoint_name=environ.get(ENDPOINT_NAME, ""),
            model_id=environ.get(MODEL_ID, ""),
            confidence_threshold=threshold,
            base_margin_threshold=margin,
            taxonomy_file=environ.get(TAXONOMY_FILE) or None,
            hotel_id_pattern=environ.get(HOTEL_ID_PATTERN),
            upload_prefix=environ.get(UPLOAD_PREFIX),
            model_parameter_name=environ.get(MODEL_PARAMETER_NAME) or None,
            service_name=environ.get(POWERTOOLS_SERVICE_NAME),
            metrics_namespace=environ.get(POWERTOOLS_METRICS_NAMESPACE),
            async_inference=AsyncEnvironment.from_environment(environ) if mode == ASYNC else None,
            scheduled=mode == SCHEDULED,
        )


def _optional_int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError as error:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from error


__all__ = [
    "ASYNC",
    "DEFAULT_HOTEL_ID_PATTERN",
    "DEFAULT_REQUEST_PREFIX",
    "DEFAULT_UPLOAD_PREFIX",
    "ENDPOINT_MODES",
    "REALTIME",
    "REQUIRED",
    "REQUIRED_BY_MODE",
    "SCHEDULED",
    "AsyncEnvironment",
    "ConfigError",
    "LabellerEnvironment",
]
