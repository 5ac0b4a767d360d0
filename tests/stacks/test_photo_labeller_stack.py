"""The composition root's wiring between constructs: which model id the labellers record, and with what access."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.stacks.conftest import Synthesized

REGISTRY_PARAMETER = "/photo-labeler/model/current"
REGISTRY_PARAMETER_ARN = {
    "Fn::Join": [
        "",
        [
            "arn:",
            {"Ref": "AWS::Partition"},
            ":ssm:",
            {"Ref": "AWS::Region"},
            ":",
            {"Ref": "AWS::AccountId"},
            ":parameter/photo-labeler/model/current",
        ],
    ]
}
LABELLERS = {"upload": "handler.lambda_handler", "backfill": "handler.backfill_handler"}


def labeller(s: Synthesized, handler: str) -> tuple[str, dict[str, Any]]:
    ((logical_id, function),) = [
        (key, f)
        for key, f in s.resources("AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == handler
    ]
    return logical_id, function["Properties"]


def role_statements(s: Synthesized, function: dict[str, Any]) -> list[dict[str, Any]]:
    role = function["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in s.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert statements, f"no policy attached to {role}"
    return statements


def ssm_statements(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in statements if "ssm:" in json.dumps(s["Action"])]


@pytest.mark.parametrize("path", sorted(LABELLERS))
def test_registry_served_labellers_read_the_model_id_from_the_registry_parameter(
    registry: Synthesized, path: str
) -> None:
    # Given an endpoint that serves the registry (a pipeline rollout changes its model without a deploy)
    _, function = labeller(registry, LABELLERS[path])
    env = function["Environment"]["Variables"]
    # Then the labeller is told which parameter names the served model, MODEL_ID (the deploy-time value) being
    # only its fallback
    assert env["MODEL_PARAMETER_NAME"] == REGISTRY_PARAMETER
    (parameter,) = [name for name in registry.json["Parameters"] if name.startswith("RegisteredModelDataUri")]
    assert env["MODEL_ID"] == {"Ref": parameter}
    # And it may read exactly that parameter, nothing else in SSM, and needs no KMS grant for it (a String)
    statements = role_statements(registry, function)
    (read,) = ssm_statements(statements)
    assert read == {"Action": "ssm:GetParameter", "Effect": "Allow", "Resource": REGISTRY_PARAMETER_ARN}
    data_key_actions = {
        action
        for s in statements
        if "kms:" in json.dumps(s["Action"])
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert data_key_actions == {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"}


@pytest.mark.parametrize("path", sorted(LABELLERS))
def test_a_pinned_model_is_recorded_as_configured_without_reading_the_registry(
    with_model: Synthesized, path: str
) -> None:
    # Given endpoint.model_data_uri pins the model (the pipeline never changes this endpoint)
    _, function = labeller(with_model, LABELLERS[path])
    env = function["Environment"]["Variables"]
    # Then labels name the pinned URI, and the labeller neither looks at nor may read the registry
    assert env["MODEL_ID"] == "s3://example-models/llava-run-7/model/"
    assert "MODEL_PARAMETER_NAME" not in env
    assert ssm_statements(role_statements(with_model, function)) == []


def test_without_a_model_the_upload_labeller_has_no_registry_access(no_model: Synthesized) -> None:
    _, function = labeller(no_model, LABELLERS["upload"])
    assert "MODEL_PARAMETER_NAME" not in function["Environment"]["Variables"]
    assert ssm_statements(role_statements(no_model, function)) == []
