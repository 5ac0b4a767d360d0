"""Every log group of the app is encrypted with the data key, which admits CloudWatch Logs for exactly those."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs

from stacks.common.encrypted_logs import encrypted_log_group
from tests.stacks.conftest import Synthesized

# The review page's (stacks/review/page.py): its API function, the API's access log, the page deployment.
REVIEW = {f"/photo-labeler/review/{name}" for name in ("api-function", "api-access", "page-deployment")}
LOG_GROUP_ARN_PREFIX = ["arn:", {"Ref": "AWS::Partition"}, ":logs:", {"Ref": "AWS::Region"}, ":"]


def data_key(s: Synthesized) -> tuple[str, dict[str, Any]]:
    ((key_id, key),) = [(k, v) for k, v in s.resources("AWS::KMS::Key").items() if k.startswith("StorageKey")]
    return key_id, key["Properties"]


def logs_service_statements(s: Synthesized) -> list[dict[str, Any]]:
    """Key policy statements whose principal is the regional CloudWatch Logs service."""
    _, key = data_key(s)
    regional_logs = {"Service": {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}}
    return [st for st in key["KeyPolicy"]["Statement"] if st["Principal"] == regional_logs]


def admitted_log_group_names(s: Synthesized) -> list[str]:
    names = []
    for statement in logs_service_statements(s):
        (operator,) = statement["Condition"]
        assert operator == "ArnEquals", statement  # an exact ARN, never a pattern
        arn = statement["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"]["Fn::Join"][1]
        assert arn[:5] == LOG_GROUP_ARN_PREFIX and arn[5] == {"Ref": "AWS::AccountId"}, arn  # this account only
        names.append(arn[6].removeprefix(":log-group:"))
    return names


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("no_model", {"/photo-labeler/lambda/labeller", "/aws/vendedlogs/states/photo-labeler-training", *REVIEW}),
        (
            "with_model",
            {
                "/photo-labeler/lambda/labeller",
                "/photo-labeler/lambda/backfill",
                "/aws/vendedlogs/states/photo-labeler-backfill",
                "/aws/vendedlogs/states/photo-labeler-training",
                *REVIEW,
            },
        ),
    ],
)
def test_every_log_group_is_encrypted_with_the_data_key_and_admitted_by_its_exact_arn(
    variant: str, expected: set[str], request: pytest.FixtureRequest
) -> None:
    # Given the template's log groups (upload labeller, training pipeline, and with a model the backfill's)
    synthesized: Synthesized = request.getfixturevalue(variant)
    key_id, _ = data_key(synthesized)
    found = synthesized.resources("AWS::Logs::LogGroup").values()
    groups = {g["Properties"]["LogGroupName"]: g["Properties"] for g in found}
    assert set(groups) == expected
    # Then each one is encrypted with the data key
    for name, group in groups.items():
        assert group["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}, name
    # And the key lets CloudWatch Logs encrypt exactly those log groups: one statement each, no other log group
    admitted = admitted_log_group_names(synthesized)
    assert sorted(admitted) == sorted(expected)


def test_cloudwatch_logs_gets_only_the_documented_key_actions(with_model: Synthesized) -> None:
    for statement in logs_service_statements(with_model):
        assert sorted(statement["Action"]) == [
            "kms:Decrypt*",
            "kms:Describe*",
            "kms:Encrypt*",
            "kms:GenerateDataKey*",
            "kms:ReEncrypt*",
        ]
        assert statement["Effect"] == "Allow" and statement["Resource"] == "*"  # "*" is the key itself
    assert "log-group:*" not in json.dumps(with_model.json)


def test_a_key_whose_policy_this_stack_cannot_change_is_refused_at_synth() -> None:
    # Given an imported key (its policy lives outside the stack, so CloudWatch Logs could not be admitted)
    stack = cdk.Stack(cdk.App(), "Imported")
    key = kms.Key.from_key_arn(
        stack, "Key", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    # Then creating an encrypted log group with it fails at synth, naming the log group, instead of at deploy
    with pytest.raises(ValueError, match="/app/lambda/x with a key this stack owns"):
        encrypted_log_group(
            stack,
            "Logs",
            log_group_name="/app/lambda/x",
            key=key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
