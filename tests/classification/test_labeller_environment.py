"""classification.labeller_environment: the variables the stack writes are the ones the code reads back, each
parsed and validated there once, and no other module of the functions or the job reads the process environment."""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from pathlib import Path

import pytest

from classification.contract import DEFAULT_TAXONOMY_PATH
from classification.labeller_environment import (
    ASYNC_INVOCATION_TIMEOUT_SECONDS,
    ASYNC_MAX_ATTEMPTS,
    ASYNC_REQUEST_BUCKET,
    ASYNC_REQUEST_PREFIX,
    ASYNC_REQUEST_TTL_SECONDS,
    BASE_MARGIN_THRESHOLD,
    CONFIDENCE_THRESHOLD,
    ENDPOINT_MODE,
    HOTEL_ID_PATTERN,
    LAMBDA_TASK_ROOT,
    MODEL_PARAMETER_NAME,
    TAXONOMY_FILE,
    AsyncEnvironment,
    ConfigError,
    LabellerEnvironment,
    ProbeEnvironment,
    WindowEnvironment,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]

UPLOAD = LabellerEnvironment(
    table_name="photo-labels",
    endpoint_name="photo-labeler-llava",
    model_id="s3://models/run-7/model/",
    confidence_threshold=0.75,
    taxonomy_file="classification/taxonomy.json",
    hotel_id_pattern=r"^uploads/(?P<hotel_id>[^/]+)/",
    upload_prefix="uploads/",
    model_parameter_name="/photo-labeler/model/current",
    service_name="photo-labeler",
    metrics_namespace="HotelPhotoLabeler",
    base_margin_threshold=0.35,
)
ASYNC_UPLOAD = replace(
    UPLOAD,
    async_inference=AsyncEnvironment(
        request_bucket="async-bucket", request_ttl_seconds=3600, invocation_timeout_seconds=600, max_attempts=3
    ),
)
# The label writer's subset: no pattern, prefix or registry parameter.
WRITER = LabellerEnvironment(
    table_name="photo-labels",
    endpoint_name="photo-labeler-llava",
    model_id="none",
    async_inference=AsyncEnvironment(request_bucket="async-bucket", request_prefix="requests/"),
)
# The backfill over the whole bucket: an empty prefix is a value, not "unset".
WHOLE_BUCKET = LabellerEnvironment(table_name="t", endpoint_name="e", model_id="m", upload_prefix="")
# endpoint.mode scheduled: no endpoint to name (docs/scheduled-mode.md).
SCHEDULED_UPLOAD = replace(UPLOAD, endpoint_name="", scheduled=True)
# The labelling job's subset, as the window's job state writes it.
LABELLING_JOB = LabellerEnvironment(
    table_name="photo-labels", endpoint_name="", model_id="s3://models/run-7/model/", scheduled=True
)
WINDOW = WindowEnvironment(
    table_name="photo-labels",
    work_bucket="photo-labeler-work",
    service_name="photo-labeler-window",
    metrics_namespace="HotelPhotoLabeler",
)
PROBE = ProbeEnvironment(taxonomy_file="classification/taxonomy.json", service_name="photo-labeler-probe")


@pytest.mark.parametrize(
    "environment",
    [UPLOAD, ASYNC_UPLOAD, WRITER, WHOLE_BUCKET, SCHEDULED_UPLOAD, LABELLING_JOB, WINDOW, PROBE],
    ids=lambda environment: type(environment).__name__,
)
def test_what_the_stack_writes_reads_back_as_the_same_environment(
    environment: LabellerEnvironment | WindowEnvironment | ProbeEnvironment,
) -> None:
    variables = environment.to_environment()
    assert all(isinstance(value, str) for value in variables.values())
    assert type(environment).from_environment(variables) == environment
    # The runtime's own variable is read, never written: Lambda refuses a reserved name in a function's variables
    # (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime)
    assert LAMBDA_TASK_ROOT not in variables


def test_unset_optional_fields_are_not_written_and_async_sets_the_mode() -> None:
    assert set(WRITER.to_environment()) == {
        "TABLE_NAME",
        "ENDPOINT_NAME",
        "MODEL_ID",
        "CONFIDENCE_THRESHOLD",
        "ENDPOINT_MODE",
        "ASYNC_REQUEST_BUCKET",
        "ASYNC_REQUEST_PREFIX",
    }
    assert WRITER.to_environment()[ENDPOINT_MODE] == "async"
    assert ENDPOINT_MODE not in UPLOAD.to_environment()
    assert UPLOAD.endpoint_mode == "realtime"
    assert WHOLE_BUCKET.to_environment()["UPLOAD_PREFIX"] == ""


def test_missing_required_variables_are_named_together() -> None:
    with pytest.raises(ConfigError, match=r"not set: TABLE_NAME, ENDPOINT_NAME, MODEL_ID$"):
        LabellerEnvironment.from_environment({})
    async_without_bucket = {**UPLOAD.to_environment(), ENDPOINT_MODE: "async"}
    with pytest.raises(ConfigError, match=f"not set: {ASYNC_REQUEST_BUCKET}$"):
        LabellerEnvironment.from_environment(async_without_bucket)
    with pytest.raises(ConfigError, match=r"not set: TABLE_NAME, WORK_BUCKET$"):
        WindowEnvironment.from_environment({})
    with pytest.raises(ConfigError, match=r"not set: WORK_BUCKET$"):
        WindowEnvironment.from_environment({"TABLE_NAME": "photo-labels", "WORK_BUCKET": ""})


def _regex_error(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        return str(error)
    raise AssertionError(f"{pattern!r} compiles")


BAD_VALUES = [
    (CONFIDENCE_THRESHOLD, "high", "CONFIDENCE_THRESHOLD must be a number, got 'high'"),
    (CONFIDENCE_THRESHOLD, "", "CONFIDENCE_THRESHOLD must be a number, got ''"),
    (CONFIDENCE_THRESHOLD, "1.5", "CONFIDENCE_THRESHOLD must be within [0, 1], got 1.5"),
    (BASE_MARGIN_THRESHOLD, "wide", "BASE_MARGIN_THRESHOLD must be a number, got 'wide'"),
    (BASE_MARGIN_THRESHOLD, "-0.1", "BASE_MARGIN_THRESHOLD must be within [0, 1], got -0.1"),
    (ENDPOINT_MODE, "batch", "ENDPOINT_MODE must be one of realtime, async, scheduled, got 'batch'"),
    (
        HOTEL_ID_PATTERN,
        r"^uploads/([^/]+)/",
        r"HOTEL_ID_PATTERN '^uploads/([^/]+)/' needs a named group (?P<hotel_id>...)",
    ),
    (
        HOTEL_ID_PATTERN,
        "(?P<hotel_id>",
        f"HOTEL_ID_PATTERN '(?P<hotel_id>' is not a valid regex: {_regex_error('(?P<hotel_id>')}",
    ),
    (
        MODEL_PARAMETER_NAME,
        "/photos/model current",
        "MODEL_PARAMETER_NAME '/photos/model current' is not an SSM parameter name or ARN "
        "(letters, digits and _.-/ only)",
    ),
    (ASYNC_MAX_ATTEMPTS, "three", "ASYNC_MAX_ATTEMPTS must be an integer, got 'three'"),
    (ASYNC_MAX_ATTEMPTS, "0", "ASYNC_MAX_ATTEMPTS must be 1..10, got 0"),
    (ASYNC_MAX_ATTEMPTS, "11", "ASYNC_MAX_ATTEMPTS must be 1..10, got 11"),
    # InvokeEndpointAsync's ranges (API reference): RequestTTLSeconds 60..21600, InvocationTimeoutSeconds 1..3600
    # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpointAsync.html
    (ASYNC_REQUEST_TTL_SECONDS, "30", "ASYNC_REQUEST_TTL_SECONDS must be 60..21600, got 30"),
    (ASYNC_INVOCATION_TIMEOUT_SECONDS, "3601", "ASYNC_INVOCATION_TIMEOUT_SECONDS must be 1..3600, got 3601"),
    (ASYNC_REQUEST_PREFIX, "requests", "ASYNC_REQUEST_PREFIX must end in '/', got 'requests'"),
]


@pytest.mark.parametrize(("variable", "value", "message"), BAD_VALUES)
def test_a_malformed_value_is_refused_naming_its_variable(variable: str, value: str, message: str) -> None:
    environ = {**ASYNC_UPLOAD.to_environment(), variable: value}
    with pytest.raises(ConfigError) as raised:
        LabellerEnvironment.from_environment(environ)
    assert str(raised.value) == message


def test_the_stack_side_is_held_to_the_same_rules() -> None:
    # Given values the app config would refuse first, handed to the contract directly
    # Then the object cannot exist, whichever side builds it, and the message is the one the function would log
    with pytest.raises(ConfigError, match=r"^CONFIDENCE_THRESHOLD must be within \[0, 1\], got 1.5$"):
        replace(UPLOAD, confidence_threshold=1.5)
    with pytest.raises(ConfigError, match=r"^HOTEL_ID_PATTERN .* needs a named group"):
        replace(UPLOAD, hotel_id_pattern=r"^uploads/([^/]+)/")
    with pytest.raises(ConfigError, match=r"^ASYNC_REQUEST_TTL_SECONDS must be 60\.\.21600, got 59$"):
        AsyncEnvironment(request_bucket="async-bucket", request_ttl_seconds=59)


def test_the_taxonomy_file_is_found_under_the_runtimes_task_root(tmp_path: Path) -> None:
    # Given a relative TAXONOMY_FILE, as the stack writes it, and the root the Lambda runtime sets
    variables = {**UPLOAD.to_environment(), LAMBDA_TASK_ROOT: str(tmp_path)}
    labeller = LabellerEnvironment.from_environment(variables)
    probe = ProbeEnvironment.from_environment(
        {TAXONOMY_FILE: "classification/taxonomy.json", LAMBDA_TASK_ROOT: "/var/task"}
    )
    # Then both functions look under the task root, unless the caller names another (the labelling job's bundle)
    assert labeller.taxonomy_path() == tmp_path / "classification" / "taxonomy.json"
    assert labeller.taxonomy_path(PROJECT_ROOT) == PROJECT_ROOT / "classification" / "taxonomy.json"
    assert probe.taxonomy_path() == Path("/var/task/classification/taxonomy.json")
    # an absolute one (a local run's) is kept, and none means the bundled taxonomy
    assert replace(labeller, taxonomy_file="/srv/taxonomy.json").taxonomy_path() == Path("/srv/taxonomy.json")
    assert ProbeEnvironment().taxonomy_path() == DEFAULT_TAXONOMY_PATH
    assert replace(labeller, taxonomy_file=None).taxonomy_path() == DEFAULT_TAXONOMY_PATH


def test_scheduled_mode_needs_no_endpoint_name_and_sets_the_mode() -> None:
    # Given the scheduled labeller's environment, as the stack writes it
    variables = SCHEDULED_UPLOAD.to_environment()
    # Then it names the mode and no endpoint, and reads back without one
    assert variables[ENDPOINT_MODE] == "scheduled" and "ENDPOINT_NAME" not in variables
    assert LabellerEnvironment.from_environment(variables).endpoint_mode == "scheduled"
    # while its table and model stay required
    with pytest.raises(ConfigError, match=r"not set: TABLE_NAME, MODEL_ID$"):
        LabellerEnvironment.from_environment({ENDPOINT_MODE: "scheduled"})


def test_a_labeller_cannot_be_both_scheduled_and_async() -> None:
    with pytest.raises(ConfigError, match="either scheduled or async"):
        replace(ASYNC_UPLOAD, scheduled=True)


# -- one reader -------------------------------------------------------------------------------------------------
# The code that runs in the functions and the labelling job.
SCANNED = ("lambda", "labelling_job", "classification")
# The only modules that may read the process environment, and why. Read outside this code by design (so not
# listed: the scan sees only our modules): POWERTOOLS_* by Powertools' Logger and Metrics, AWS_* by botocore.
READERS = {
    "classification/labeller_environment.py": "the functions' contract: every variable the stack writes, parsed "
    "and validated once into LabellerEnvironment, WindowEnvironment or ProbeEnvironment",
    "labelling_job/job_environment.py": "the labelling job's start: SageMaker's platform variables (SM_*, "
    "TRAINING_JOB_NAME) beside the files it writes, and the labeller's variables through the contract",
}
_ENVIRONMENT_ATTRIBUTES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})


def environment_reads(source: str) -> list[int]:
    """The lines where `source` touches the process environment through `os`, however it is imported or reached
    (`os.environ`, `os.getenv`, `from os import environ`, `import os as system`, `handler.os.environ`)."""
    tree = ast.parse(source)
    os_names = {"os"}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names.update(alias.asname or alias.name for alias in node.names if alias.name == "os")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in _ENVIRONMENT_ATTRIBUTES or alias.name == "*" for alias in node.names)
        ):
            lines.append(node.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _ENVIRONMENT_ATTRIBUTES:
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id in os_names) or (
                isinstance(owner, ast.Attribute) and owner.attr == "os"
            ):
                lines.append(node.lineno)
    return sorted(lines)


def test_the_scan_finds_every_spelling_of_a_read_and_nothing_else() -> None:
    # Given a module reading the environment each way Python allows, and one only using mappings it was handed
    reads = """import os
import os as system
from os import environ
from os import getenv as read
a = os.environ["TABLE_NAME"]
b = os.getenv("TABLE_NAME")
c = system.environ.get("TABLE_NAME")
d = handler.os.environ["TABLE_NAME"]
os.environ["TABLE_NAME"] = "x"
"""
    clean = """from collections.abc import Mapping
def table(environ: Mapping[str, str]) -> str:
    return environ.get("TABLE_NAME") or self.environ["x"]  # not os.environ
note = "os.environ"
"""
    # Then every read is found, on its line, and the mapping-only module is clean
    assert environment_reads(reads) == [3, 4, 5, 6, 7, 8, 9]
    assert environment_reads(clean) == []


def test_only_the_contracts_read_the_process_environment() -> None:
    # Given every module the functions and the labelling job run
    files = sorted(path for folder in SCANNED for path in (PROJECT_ROOT / folder).rglob("*.py"))
    assert len(files) > 20  # the whole tree, not an empty glob
    found = {
        path.relative_to(PROJECT_ROOT).as_posix(): environment_reads(path.read_text(encoding="utf-8"))
        for path in files
    }
    # Then only the contracts read it (each allowed reader really does: the list cannot go stale)
    assert {name: lines for name, lines in found.items() if lines and name not in READERS} == {}
    assert all(found[name] for name in READERS)
