"""The functions' environment: one contract for the stack that writes it and the code that reads it.

The stack builds one of the dataclasses below and sets its `to_environment()` as the function's variables:
- `LabellerEnvironment`: the upload and backfill labellers (stacks/labelling/labeller_function.py), the async label
  writer (stacks/labelling/async_label_writer.py) and a scheduled window's labelling job
  (stacks/labelling/window_states.py);
- `WindowEnvironment`: a scheduled window's steps (stacks/labelling/window.py);
- `ProbeEnvironment`: the rollout probe (stacks/training_pipeline/probe_steps.py).
The code reads them back here and nowhere else: each handler parses its environment once, when it builds its
clients (`from_process()`: lambda/handler.py, async_handler.py, window_handler.py, probe_handler.py; the labelling
job through labelling_job/job_environment.py), and hands the parsed object to every builder. Every variable is
typed and validated here, whichever side builds the object: a bad one raises one ConfigError naming it. A variable
is named once, here, so the two sides cannot drift apart; docs/interfaces.md describes each.
tests/classification/test_labeller_environment.py fails if another module of lambda/, labelling_job/ or
classification/ reads the process environment.

Read outside this module by design: Powertools reads POWERTOOLS_* itself (Logger and Metrics, at import; written
here), botocore reads AWS_* (region, credentials, endpoint URLs), and the Lambda runtime sets LAMBDA_TASK_ROOT
(read here, never written: Lambda reserves it).

At synth time the names and ids may hold CDK tokens (the table's name, the registry's model URI): they pass
through `to_environment()` unchanged and CloudFormation fills them in, so they are only checked for presence when
read. Numbers, patterns and the registry parameter name come from the validated app config, never from tokens,
so they are checked on construction on both sides and numbers are rendered with `str()`.

Standard library only: this module is bundled into the Lambda (classification/) and imported by the CDK app.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from classification.contract import DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_TAXONOMY_PATH

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
WORK_BUCKET = "WORK_BUCKET"
# Read by Powertools itself (Logger, Metrics), written by the stack like the others.
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
ENDPOINT_MODE = "ENDPOINT_MODE"
ASYNC_REQUEST_BUCKET = "ASYNC_REQUEST_BUCKET"
ASYNC_REQUEST_PREFIX = "ASYNC_REQUEST_PREFIX"
ASYNC_REQUEST_TTL_SECONDS = "ASYNC_REQUEST_TTL_SECONDS"
ASYNC_INVOCATION_TIMEOUT_SECONDS = "ASYNC_INVOCATION_TIMEOUT_SECONDS"
ASYNC_MAX_ATTEMPTS = "ASYNC_MAX_ATTEMPTS"
# The bundle's root, set by the Lambda runtime and reserved (a function cannot set it): read, never written.
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
LAMBDA_TASK_ROOT = "LAMBDA_TASK_ROOT"

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
WINDOW_REQUIRED = (TABLE_NAME, WORK_BUCKET)

# -- what an unset optional variable means ----------------------------------------------------------------------
DEFAULT_HOTEL_ID_PATTERN = r"^[^/]+/(?P<hotel_id>[^/]+)/"  # uploads/<hotel_id>/<file>
DEFAULT_UPLOAD_PREFIX = "uploads/"
DEFAULT_REQUEST_PREFIX = "requests/"

# -- the limits a value must respect ----------------------------------------------------------------------------
# InvokeEndpointAsync's own (API reference: RequestTTLSeconds 60..21600, InvocationTimeoutSeconds 1..3600):
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpointAsync.html
MIN_REQUEST_TTL_SECONDS = 60
MAX_REQUEST_TTL_SECONDS = 21_600
MAX_INVOCATION_TIMEOUT_SECONDS = 3_600
MAX_ASYNC_ATTEMPTS = 10  # inferences per photo version: the project's cap (config async_inference.max_attempts)
# SSM accepts a parameter name (letters, digits, `_.-/`, at most 2,048 characters) or its ARN; anything else can
# only be a typo, which would otherwise surface as "parameter not found" and a silent fallback to MODEL_ID.
_PARAMETER_NAME_RE = re.compile(r"^(arn:[\w-]+:ssm:[\w-]*:\d*:parameter/\S+|[A-Za-z0-9_./-]{1,2048})$")


class ConfigError(ValueError):
    """The function's environment cannot configure it; the message names the variable."""


@dataclass(frozen=True)
class AsyncEnvironment:
    """endpoint.mode async: where the submitting functions put requests, and SageMaker's limits for them.

    An unset limit (None) is left to lambda/async_core.AsyncSettings' default.
    """

    request_bucket: str
    request_prefix: str = DEFAULT_REQUEST_PREFIX
    request_ttl_seconds: int | None = None
    invocation_timeout_seconds: int | None = None
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.request_prefix and not self.request_prefix.endswith("/"):
            raise ConfigError(f"{ASYNC_REQUEST_PREFIX} must end in '/', got {self.request_prefix!r}")
        _check_range(ASYNC_MAX_ATTEMPTS, self.max_attempts, 1, MAX_ASYNC_ATTEMPTS)
        _check_range(
            ASYNC_REQUEST_TTL_SECONDS, self.request_ttl_seconds, MIN_REQUEST_TTL_SECONDS, MAX_REQUEST_TTL_SECONDS
        )
        _check_range(
            ASYNC_INVOCATION_TIMEOUT_SECONDS, self.invocation_timeout_seconds, 1, MAX_INVOCATION_TIMEOUT_SECONDS
        )

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
    def _read(cls, environ: Mapping[str, str]) -> AsyncEnvironment:
        """The ASYNC_* variables; an unset bucket reads as "" (from_environment has required it by then)."""
        return cls(
            request_bucket=environ.get(ASYNC_REQUEST_BUCKET, ""),
            request_prefix=environ.get(ASYNC_REQUEST_PREFIX, DEFAULT_REQUEST_PREFIX),
            request_ttl_seconds=_optional_int(environ, ASYNC_REQUEST_TTL_SECONDS),
            invocation_timeout_seconds=_optional_int(environ, ASYNC_INVOCATION_TIMEOUT_SECONDS),
            max_attempts=_optional_int(environ, ASYNC_MAX_ATTEMPTS),
        )


@dataclass(frozen=True)
class LabellerEnvironment:
    """Every variable a labeller function is given. None = not set: the function's default applies.

    The upload and backfill labellers set all of them (the backfill with an empty UPLOAD_PREFIX when it covers
    the whole bucket); the async label writer leaves HOTEL_ID_PATTERN, UPLOAD_PREFIX and MODEL_PARAMETER_NAME
    unset; the labelling job is given TABLE_NAME, MODEL_ID, CONFIDENCE_THRESHOLD and TAXONOMY_FILE.
    `async_inference` set means ENDPOINT_MODE=async; `scheduled` means ENDPOINT_MODE=scheduled, where
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
    task_root: str | None = None  # LAMBDA_TASK_ROOT, read only; None: the working directory

    def __post_init__(self) -> None:
        if self.scheduled and self.async_inference is not None:
            raise ConfigError("a labeller is either scheduled or async, not both")
        _check_fraction(CONFIDENCE_THRESHOLD, self.confidence_threshold)
        _check_fraction(BASE_MARGIN_THRESHOLD, self.base_margin_threshold)
        if self.hotel_id_pattern is not None:
            _check_hotel_id_pattern(self.hotel_id_pattern)
        if self.model_parameter_name is not None and not _PARAMETER_NAME_RE.match(self.model_parameter_name):
            raise ConfigError(
                f"{MODEL_PARAMETER_NAME} {self.model_parameter_name!r} is not an SSM parameter name or ARN "
                "(letters, digits and _.-/ only)"
            )

    @property
    def endpoint_mode(self) -> str:
        if self.async_inference is not None:
            return ASYNC
        return SCHEDULED if self.scheduled else REALTIME

    def taxonomy_path(self, task_root: Path | None = None) -> Path:
        """TAXONOMY_FILE under `task_root` (default: LAMBDA_TASK_ROOT, else the working directory) when relative;
        the bundled taxonomy when unset."""
        return _taxonomy_path(self.taxonomy_file, task_root or Path(self.task_root or "."))

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
            **_set(optional),
            **(self.async_inference.to_environment() if self.async_inference is not None else {}),
            **({ENDPOINT_MODE: SCHEDULED} if self.scheduled else {}),
        }

    @classmethod
    def from_process(cls) -> LabellerEnvironment:
        """This process's environment: a function's cold start, the labelling job's start."""
        return cls.from_environment(os.environ)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> LabellerEnvironment:
        """Read a function's environment; ConfigError names the variable that is missing or malformed."""
        mode = environ.get(ENDPOINT_MODE, REALTIME)
        if mode not in ENDPOINT_MODES:
            raise ConfigError(f"{ENDPOINT_MODE} must be one of {', '.join(ENDPOINT_MODES)}, got {mode!r}")
        _require(environ, REQUIRED_BY_MODE[mode])
        return cls(
            table_name=environ[TABLE_NAME],
            endpoint_name=environ.get(ENDPOINT_NAME, ""),
            model_id=environ[MODEL_ID],
            confidence_threshold=_number(
                CONFIDENCE_THRESHOLD, environ.get(CONFIDENCE_THRESHOLD, str(DEFAULT_CONFIDENCE_THRESHOLD))
            ),
            base_margin_threshold=_optional_number(
                BASE_MARGIN_THRESHOLD, environ.get(BASE_MARGIN_THRESHOLD) or None
            ),
            taxonomy_file=environ.get(TAXONOMY_FILE) or None,
            hotel_id_pattern=environ.get(HOTEL_ID_PATTERN),
            upload_prefix=environ.get(UPLOAD_PREFIX),
            model_parameter_name=environ.get(MODEL_PARAMETER_NAME) or None,
            service_name=environ.get(POWERTOOLS_SERVICE_NAME),
            metrics_namespace=environ.get(POWERTOOLS_METRICS_NAMESPACE),
            async_inference=AsyncEnvironment._read(environ) if mode == ASYNC else None,
            scheduled=mode == SCHEDULED,
            task_root=environ.get(LAMBDA_TASK_ROOT) or None,
        )


@dataclass(frozen=True)
class WindowEnvironment:
    """A scheduled window's steps (lambda/window_handler.py): the labels table's PENDING index, the work bucket."""

    table_name: str
    work_bucket: str  # manifests and the jobs' checkpoints
    service_name: str | None = None
    metrics_namespace: str | None = None

    def to_environment(self) -> dict[str, str]:
        return {
            TABLE_NAME: self.table_name,
            WORK_BUCKET: self.work_bucket,
            **_set(
                {POWERTOOLS_SERVICE_NAME: self.service_name, POWERTOOLS_METRICS_NAMESPACE: self.metrics_namespace}
            ),
        }

    @classmethod
    def from_process(cls) -> WindowEnvironment:
        return cls.from_environment(os.environ)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> WindowEnvironment:
        _require(environ, WINDOW_REQUIRED)
        return cls(
            table_name=environ[TABLE_NAME],
            work_bucket=environ[WORK_BUCKET],
            service_name=environ.get(POWERTOOLS_SERVICE_NAME),
            metrics_namespace=environ.get(POWERTOOLS_METRICS_NAMESPACE),
        )


@dataclass(frozen=True)
class ProbeEnvironment:
    """The rollout probe (lambda/probe_handler.py): the taxonomy the labellers serve, found as theirs is."""

    taxonomy_file: str | None = None  # as LabellerEnvironment.taxonomy_file
    service_name: str | None = None
    task_root: str | None = None  # LAMBDA_TASK_ROOT, read only

    def taxonomy_path(self) -> Path:
        return _taxonomy_path(self.taxonomy_file, Path(self.task_root or "."))

    def to_environment(self) -> dict[str, str]:
        return _set({TAXONOMY_FILE: self.taxonomy_file, POWERTOOLS_SERVICE_NAME: self.service_name})

    @classmethod
    def from_process(cls) -> ProbeEnvironment:
        return cls.from_environment(os.environ)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ProbeEnvironment:
        return cls(
            taxonomy_file=environ.get(TAXONOMY_FILE) or None,
            service_name=environ.get(POWERTOOLS_SERVICE_NAME),
            task_root=environ.get(LAMBDA_TASK_ROOT) or None,
        )


def _taxonomy_path(taxonomy_file: str | None, task_root: Path) -> Path:
    # An absolute TAXONOMY_FILE (a local run's) stays as it is: joining an absolute path keeps it.
    return task_root / taxonomy_file if taxonomy_file else DEFAULT_TAXONOMY_PATH


def _set(variables: Mapping[str, str | None]) -> dict[str, str]:
    """The variables that have a value: an unset optional one is not written."""
    return {name: value for name, value in variables.items() if value is not None}


def _require(environ: Mapping[str, str], names: tuple[str, ...]) -> None:
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise ConfigError(f"environment variables not set: {', '.join(missing)}")


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError as error:
        raise ConfigError(f"{name} must be a number, got {text!r}") from error


def _optional_number(name: str, text: str | None) -> float | None:
    return None if text is None else _number(name, text)


def _optional_int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError as error:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from error


def _check_fraction(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be within [0, 1], got {value}")


def _check_range(name: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise ConfigError(f"{name} must be {low}..{high}, got {value}")


def _check_hotel_id_pattern(pattern: str) -> None:
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"{HOTEL_ID_PATTERN} {pattern!r} is not a valid regex: {error}") from error
    if "hotel_id" not in compiled.groupindex:
        raise ConfigError(f"{HOTEL_ID_PATTERN} {pattern!r} needs a named group (?P<hotel_id>...)")


__all__ = [
    "ASYNC",
    "DEFAULT_HOTEL_ID_PATTERN",
    "DEFAULT_REQUEST_PREFIX",
    "DEFAULT_UPLOAD_PREFIX",
    "ENDPOINT_MODES",
    "MAX_ASYNC_ATTEMPTS",
    "MAX_INVOCATION_TIMEOUT_SECONDS",
    "MAX_REQUEST_TTL_SECONDS",
    "MIN_REQUEST_TTL_SECONDS",
    "REALTIME",
    "REQUIRED",
    "REQUIRED_BY_MODE",
    "SCHEDULED",
    "WINDOW_REQUIRED",
    "AsyncEnvironment",
    "ConfigError",
    "LabellerEnvironment",
    "ProbeEnvironment",
    "WindowEnvironment",
]
