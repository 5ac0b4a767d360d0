"""The shared image URI and ECR pull helpers used by the serving and training images."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from stacks.container_images import ECR_PULL_ACTIONS, ecr_image_uri, grant_ecr_pull, regional_image_uri

REGISTRIES = {"us-east-1": "111111111111", "cn-north-1": "222222222222"}
SUFFIXES = {"us-east-1": "amazonaws.com", "cn-north-1": "amazonaws.com.cn"}


def _uri(stack: cdk.Stack) -> str:
    return regional_image_uri(
        stack,
        "Registry",
        registries=REGISTRIES,
        dns_suffixes=SUFFIXES,
        repository="repo",
        tag="1.0",
        literal=lambda region: ecr_image_uri(REGISTRIES[region], region, SUFFIXES[region], "repo", "1.0"),
    )


def test_known_region_gets_a_literal_uri_and_no_mapping() -> None:
    stack = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="123456789012", region="cn-north-1"))
    assert _uri(stack) == "222222222222.dkr.ecr.cn-north-1.amazonaws.com.cn/repo:1.0"
    assert "Mappings" not in Template.from_stack(stack).to_json()


def test_agnostic_stack_gets_a_region_mapping() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    uri = _uri(stack)
    assert cdk.Token.is_unresolved(uri)
    (mapping,) = Template.from_stack(stack).to_json()["Mappings"].values()
    assert mapping == {
        "us-east-1": {"account": "111111111111", "dnsSuffix": "amazonaws.com"},
        "cn-north-1": {"account": "222222222222", "dnsSuffix": "amazonaws.com.cn"},
    }


def test_grant_ecr_pull_pins_the_repository_name_in_any_account() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    arn = grant_ecr_pull(role, "repo")
    statements = stack.resolve(role.node.find_child("DefaultPolicy").document)["Statement"]
    assert [s["Action"] for s in statements] == [list(ECR_PULL_ACTIONS), "ecr:GetAuthorizationToken"]
    assert statements[0]["Resource"] == stack.resolve(arn)
    assert ":*:repository/repo" in str(stack.resolve(arn))
    assert statements[1]["Resource"] == "*"
