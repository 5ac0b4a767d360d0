"""The shared image URI and ECR pull helpers used by the serving and training images."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from stacks.common.container_images import ECR_PULL_ACTIONS, ecr_image_uri, grant_ecr_pull, regional_image_uri
from tests.stacks.intrinsics import resolve

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


def test_grant_ecr_pull_names_the_account_of_a_literal_image_uri() -> None:
    stack = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="123456789012", region="us-east-1"))
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    arn = grant_ecr_pull(role, "111111111111.dkr.ecr.us-east-1.amazonaws.com/repo:1.0", "repo")
    statements = stack.resolve(role.node.find_child("DefaultPolicy").document)["Statement"]
    assert [s["Action"] for s in statements] == [list(ECR_PULL_ACTIONS), "ecr:GetAuthorizationToken"]
    assert statements[0]["Resource"] == stack.resolve(arn)
    assert stack.resolve(arn) == {
        "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":ecr:us-east-1:111111111111:repository/repo"]]
    }
    assert statements[1]["Resource"] == "*"


def test_grant_ecr_pull_in_an_agnostic_stack_names_the_account_the_region_mapping_resolves_to() -> None:
    # Given an environment-agnostic stack, whose image account is a deploy-time mapping lookup
    stack = cdk.Stack(cdk.App(), "S")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    uri = _uri(stack)
    arn = grant_ecr_pull(role, uri, "repo")
    template = Template.from_stack(stack).to_json()
    # Then the grant's account is the account of the image URI CloudFormation builds (no `*` account)
    resolved = resolve(stack.resolve(arn), template)
    assert resolved == "arn:aws:ecr:us-east-1:111111111111:repository/repo"
