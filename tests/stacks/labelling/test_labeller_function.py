"""The labeller functions: the environment the stack synthesises is what the Lambda's own reader expects, and the
shared construct keeps the logical IDs of the resources it took over."""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3

from classification.labeller_environment import LabellerEnvironment
from stacks.config import BackfillConfig
from stacks.labelling.backfill import BACKFILL_SERVICE_NAME, Backfill
from stacks.labelling.labeller_function import LabellerProps
from tests.stacks.conftest import MODEL_URI, PROJECT_ROOT, Synthesized
from tests.stacks.intrinsics import placeholder, resolve

HANDLERS = {"upload": "handler.lambda_handler", "backfill": "handler.backfill_handler"}


@pytest.fixture
def labeller_core(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The bundle puts lambda/*.py at the task root, where labeller_core imports its siblings: mirror that.
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "lambda"))
    return importlib.import_module("labeller_core")


def _deployed_environment(s: Synthesized, handler: str) -> dict[str, str]:
    """A function's Environment.Variables as CloudFormation would fill them in (placeholders for references)."""
    (function,) = [
        f["Properties"]
        for f in s.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == handler
    ]
    variables = resolve(function["Environment"]["Variables"], s.json)
    assert all(isinstance(value, str) for value in variables.values())
    return variables


def _reference(s: Synthesized, type_name: str, contains: str) -> str:
    (logical_id,) = [k for k in s.resources(type_name) if contains in k]
    return placeholder(logical_id, type_name=type_name)


@pytest.mark.parametrize("labeller", ["upload", "backfill"])
def test_a_pinned_models_labellers_read_their_environment_into_the_configured_labeller(
    with_model: Synthesized, labeller: str, labeller_core: ModuleType
) -> None:
    # Given the synthesised environment of a labeller
    variables = _deployed_environment(with_model, HANDLERS[labeller])
    # When the Lambda reads it the way handler.get_labeller does
    environment = LabellerEnvironment.from_environment(variables)
    labeller_config = labeller_core.LabellerConfig.from_environment(environment, task_root=PROJECT_ROOT)
    # Then it is the stack's configuration, resolved
    config = with_model.stack.config
    prefix, pattern = (
        (config.storage.upload_prefix, config.upload.hotel_id_pattern)
        if labeller == "upload"
        else (config.backfill.source_prefix, config.backfill.hotel_id_pattern)
    )
    assert environment.table_name == _reference(with_model, "AWS::DynamoDB::Table", "LabelsTable")
    assert environment.endpoint_name == with_model.stack.endpoint_name
    assert environment.endpoint_mode == "realtime"
    assert environment.service_name == ("photo-labeler" if labeller == "upload" else BACKFILL_SERVICE_NAME)
    assert environment.metrics_namespace == config.metrics_namespace
    assert labeller_config.model_id == MODEL_URI
    assert labeller_config.model_parameter_name is None
    assert labeller_config.confidence_threshold == config.upload.confidence_threshold
    assert labeller_config.upload_prefix == prefix
    assert labeller_config.hotel_id_pattern.pattern == pattern
    assert labeller_config.taxonomy.labels == config.taxonomy.labels


@pytest.mark.parametrize("handler", sorted(HANDLERS.values()))
def test_registry_served_labellers_read_the_registry_parameter_and_fall_back_to_the_deployed_model(
    registry: Synthesized, handler: str, labeller_core: ModuleType
) -> None:
    environment = LabellerEnvironment.from_environment(_deployed_environment(registry, handler))
    config = labeller_core.LabellerConfig.from_environment(environment, task_root=PROJECT_ROOT)
    assert config.model_parameter_name == registry.stack.model_store.parameter_name
    # MODEL_ID is the registry's value at deploy time (a CloudFormation parameter)
    assert config.model_id == placeholder("RegisteredModelDataUri")


@pytest.mark.parametrize("handler", [*sorted(HANDLERS.values()), "async_handler.lambda_handler"])
def test_async_mode_functions_read_the_request_bucket_and_the_configured_limits(
    async_mode: Synthesized, handler: str
) -> None:
    environment = LabellerEnvironment.from_environment(_deployed_environment(async_mode, handler))
    settings = async_mode.stack.config.async_inference
    assert environment.async_inference is not None
    assert environment.async_inference.request_bucket == _reference(
        async_mode, "AWS::S3::Bucket", "AsyncInference"
    )
    assert environment.async_inference.request_prefix == "requests/"
    assert (
        environment.async_inference.request_ttl_seconds,
        environment.async_inference.invocation_timeout_seconds,
        environment.async_inference.max_attempts,
    ) == (settings.request_ttl_seconds, settings.invocation_timeout_seconds, settings.max_attempts)


def test_the_label_writer_gets_the_contract_without_the_upload_settings(async_mode: Synthesized) -> None:
    environment = LabellerEnvironment.from_environment(
        _deployed_environment(async_mode, "async_handler.lambda_handler")
    )
    assert (environment.hotel_id_pattern, environment.upload_prefix, environment.model_parameter_name) == (
        None,
        None,
        None,
    )
    assert environment.model_id == MODEL_URI


def test_the_shared_construct_keeps_the_logical_ids_of_the_named_log_groups_and_their_functions(
    async_mode: Synthesized,
) -> None:
    # A named log group cannot be replaced (CloudFormation would create the same name twice): its logical ID,
    # and those of the function, role and policy around it, are the ones deployed before LabellerFunction.
    groups = {
        props["LogGroupName"]: logical_id
        for logical_id, group in async_mode.resources("AWS::Logs::LogGroup").items()
        if (props := group["Properties"]).get("LogGroupName", "").endswith(("/labeller", "/backfill"))
    }
    assert groups == {
        "/photo-labeler/lambda/labeller": "UploadPathFunctionLogsC8EE4507",
        "/photo-labeler/lambda/backfill": "BackfillFunctionLogs07841CC7",
    }
    resources = async_mode.json["Resources"]
    for logical_id in (
        "UploadPathFunctionE388AC01",
        "UploadPathFunctionRole4740ED8D",
        "UploadPathFunctionRoleDefaultPolicy0A2666EE",
        "BackfillFunction19A2381B",
        "BackfillFunctionRole9F2FC8D0",
        "BackfillFunctionRoleDefaultPolicy122F1996",
    ):
        assert logical_id in resources, logical_id


def test_a_backfill_without_an_endpoint_is_refused() -> None:
    stack = cdk.Stack(cdk.App(), "Bare")
    props = LabellerProps(
        name_prefix="photo-labeler",
        code=lambda_.Code.from_inline("def handler(event, context): pass"),
        bucket=s3.Bucket(stack, "Photos"),
        table=dynamodb.Table(
            stack, "Labels", partition_key=dynamodb.Attribute(name="image_uri", type=dynamodb.AttributeType.STRING)
        ),
        data_key=kms.Key(stack, "Key"),
        endpoint_name="photo-labeler-llava",
        endpoint=None,
        model_id="none",
        confidence_threshold=0.8,
        taxonomy_file="classification/taxonomy.json",
        metrics_namespace="HotelPhotoLabeler",
    )
    with pytest.raises(ValueError, match="needs an endpoint"):
        Backfill(stack, "Backfill", config=BackfillConfig(), labeller=props, access_log_bucket=props.bucket)


def _role_statements(s: Synthesized, role_prefix: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in s.resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        if f'"{role_prefix}' in roles:
            statements += resolve(policy["Properties"]["PolicyDocument"]["Statement"], s.json)
    return statements


def _profile_grants(statements: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    reads = [
        resource
        for st in statements
        if st["Action"] == "s3:GetObject"
        for resource in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])
        if resource.endswith("model_profile.json")
    ]
    lists = [
        st
        for st in statements
        if st["Action"] == "s3:ListBucket" and "model_profile.json" in json.dumps(st.get("Condition"))
    ]
    return reads, lists


@pytest.mark.parametrize("role", ["UploadPathFunctionRole", "BackfillFunctionRole"])
def test_registry_served_labellers_may_read_exactly_the_profile_records_of_trained_and_staged_models(
    registry: Synthesized, role: str
) -> None:
    # The record says which request and routing rule the served model needs (classification/model_profile.py)
    bucket = placeholder(
        next(k for k in registry.resources("AWS::S3::Bucket") if k.startswith("ModelStore")), "Arn"
    )
    reads, lists = _profile_grants(_role_statements(registry, role))
    assert sorted(reads) == [
        f"{bucket}/base-models/*/model_profile.json",
        f"{bucket}/models/*/model_profile.json",
    ]
    # listed before read, so a model without a record reads as absent rather than 403 (labeller_aws)
    (listing,) = lists
    assert listing["Resource"] == bucket
    assert listing["Condition"] == {
        "StringLike": {"s3:prefix": ["models/*/model_profile.json", "base-models/*/model_profile.json"]}
    }


@pytest.mark.parametrize(
    ("fixture", "role"),
    [
        ("with_model", "UploadPathFunctionRole"),
        ("async_mode", "AsyncLabelWriterFunctionRole"),
    ],
)
def test_a_pinned_models_labellers_may_read_its_one_profile_record(
    fixture: str, role: str, request: pytest.FixtureRequest
) -> None:
    synthesized: Synthesized = request.getfixturevalue(fixture)
    reads, lists = _profile_grants(_role_statements(synthesized, role))
    assert reads == ["arn:aws:s3:::example-models/llava-run-7/model/model_profile.json"]
    assert [st["Condition"] for st in lists] == [
        {"StringLike": {"s3:prefix": ["llava-run-7/model/model_profile.json"]}}
    ]


def test_without_a_model_no_profile_record_is_readable(no_model: Synthesized) -> None:
    assert _profile_grants(_role_statements(no_model, "UploadPathFunctionRole")) == ([], [])


def test_the_base_margin_threshold_reaches_every_labeller_and_is_unset_by_default(
    with_model: Synthesized, synth_app: Any
) -> None:
    for handler in HANDLERS.values():
        assert "BASE_MARGIN_THRESHOLD" not in _deployed_environment(with_model, handler)
    calibrated = synth_app(
        {
            "photo_labeler.endpoint.model_data_uri": MODEL_URI,
            "photo_labeler.upload.base_margin_threshold": "0.35",
        }
    )
    for handler in HANDLERS.values():
        environment = LabellerEnvironment.from_environment(_deployed_environment(calibrated, handler))
        assert environment.base_margin_threshold == 0.35
