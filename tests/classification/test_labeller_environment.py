"""classification.labeller_environment: the variables the stack writes are the ones the Lambda reads back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from classification.labeller_environment import (
    ASYNC_MAX_ATTEMPTS,
    ASYNC_REQUEST_BUCKET,
    ASYNC_REQUEST_PREFIX,
    BASE_MARGIN_THRESHOLD,
    CONFIDENCE_THRESHOLD,
    ENDPOINT_MODE,
    AsyncEnvironment,
    ConfigError,
    LabellerEnvironment,
)

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


@pytest.mark.parametrize("environment", [UPLOAD, ASYNC_UPLOAD, WRITER, WHOLE_BUCKET, SCHEDULED_UPLOAD])
def test_what_the_stack_writes_reads_back_as_the_same_environment(environment: LabellerEnvironment) -> None:
    variables = environment.to_environment()
    assert all(isinstance(value, str) for value in variables.values())
    assert LabellerEnvironment.from_environment(variables) == environment


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
    # Settings alone (LabellerConfig.from_env): nothing is required, unset names read as empty
    assert LabellerEnvironment.from_environment({}, require=False).table_name == ""


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (CONFIDENCE_THRESHOLD, "high", "CONFIDENCE_THRESHOLD must be a number, got 'high'"),
        (BASE_MARGIN_THRESHOLD, "wide", "BASE_MARGIN_THRESHOLD must be a number, got 'wide'"),
        (ENDPOINT_MODE, "batch", "ENDPOINT_MODE must be one of realtime, async, scheduled, got 'batch'"),
        (ASYNC_MAX_ATTEMPTS, "three", "ASYNC_MAX_ATTEMPTS must be an integer, got 'three'"),
        (ASYNC_REQUEST_PREFIX, "requests", "ASYNC_REQUEST_PREFIX must end in '/', got 'requests'"),
    ],
)
def test_a_malformed_value_is_refused_naming_its_variable(variable: str, value: str, message: str) -> None:
    environ = {**ASYNC_UPLOAD.to_environment(), variable: value}
    with pytest.raises(ConfigError) as raised:
        LabellerEnvironment.from_environment(environ)
    assert str(raised.value) == message


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
