"""The review construct for a team: groups, the append-only history table, the token the page sends and the one
redirect URI sign-in uses."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from review_api import aws as review_aws
from review_api import core as review_core
from stacks.config import ReviewPageConfig
from stacks.review import history_table
from stacks.review.page import ReviewPage
from tests.stacks.review.test_review import build


@pytest.fixture(scope="module")
def built() -> tuple[cdk.Stack, ReviewPage, Template]:
    stack, review, _ = build()
    return stack, review, Template.from_stack(stack)


def test_the_pool_has_the_reviewers_and_leads_groups(built: Any) -> None:
    _, _, template = built
    groups = template.find_resources("AWS::Cognito::UserPoolGroup")
    assert sorted(group["Properties"]["GroupName"] for group in groups.values()) == ["leads", "reviewers"]
    (pool,) = template.find_resources("AWS::Cognito::UserPool")
    assert all(group["Properties"]["UserPoolId"] == {"Ref": pool} for group in groups.values())


def test_the_history_table_is_keyed_as_the_api_writes_it_encrypted_and_recoverable(built: Any) -> None:
    stack, review, template = built
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": history_table.table_name("t"),
            "KeySchema": [
                {"AttributeName": history_table.PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": history_table.SORT_KEY, "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": [
                {"AttributeName": "image_uri", "AttributeType": "S"},
                {"AttributeName": "seq", "AttributeType": "N"},
            ],
            "SSESpecification": Match.object_like({"SSEEnabled": True, "SSEType": "KMS"}),
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "DeletionProtectionEnabled": True,
        },
    )
    # The Lambda (which does not bundle stacks/) spells the same key, and is told the table's name
    assert review_aws.HISTORY_SORT_KEY == history_table.SORT_KEY
    function = stack.get_logical_id(review.function.node.default_child)  # type: ignore[arg-type]
    env = template.find_resources("AWS::Lambda::Function")[function]["Properties"]["Environment"]["Variables"]
    table = stack.get_logical_id(review.history_table.node.default_child)  # type: ignore[arg-type]
    assert env["HISTORY_TABLE_NAME"] == {"Ref": table} and env["LEASE_SECONDS"] == "300"


def test_the_kits_history_table_has_the_stacks_keys(built: Any) -> None:
    import boto3
    from moto import mock_aws

    _, _, template = built
    (deployed,) = [
        table["Properties"]
        for logical_id, table in template.find_resources("AWS::DynamoDB::Table").items()
        if logical_id.startswith("ReviewHistoryTable")
    ]
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(**history_table.create_table_kwargs("h"))
        local = dynamodb.describe_table(TableName="h")["Table"]
    assert local["KeySchema"] == deployed["KeySchema"]
    assert sorted(map(str, local["AttributeDefinitions"])) == sorted(map(str, deployed["AttributeDefinitions"]))
    assert deployed["BillingMode"] == local["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_the_lambdas_fallback_defaults_are_the_configs() -> None:
    # review_api/ is bundled without stacks/: its defaults for a missing variable must be the config's defaults.
    config = ReviewPageConfig()
    assert (
        config.lease_seconds,
        config.presigned_url_seconds,
    ) == (review_core.LEASE_SECONDS, review_core.PRESIGNED_URL_SECONDS)


def test_the_page_signs_in_with_the_one_redirect_uri_the_client_allows(built: Any) -> None:
    # Cognito refuses (redirect_mismatch) a redirect_uri that is not exactly one of the client's callback URLs
    # (https://docs.aws.amazon.com/cognito/latest/developerguide/authorization-endpoint.html): the page must send
    # the configured one, not whatever path it was opened at (issue 17, item 5).
    stack, review, template = built
    (client,) = template.find_resources("AWS::Cognito::UserPoolClient").values()
    page = stack.resolve(review._page_config())
    assert client["Properties"]["CallbackURLs"] == [page["cognito"]["redirectUri"]]
    assert client["Properties"]["LogoutURLs"] == [page["cognito"]["redirectUri"]]
    assert json.dumps(page["cognito"]["redirectUri"]).endswith('"/"]]}')


def test_the_id_token_the_page_sends_passes_the_authorizer(built: Any) -> None:
    # An HTTP API JWT authorizer checks `aud` (the ID token's: the app client id) against its audience, and
    # scopes only where a route asks for some; an ID token carries no scope
    # (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html).
    _, _, template = built
    (authorizer,) = template.find_resources("AWS::ApiGatewayV2::Authorizer").values()
    assert (
        authorizer["Properties"]["JwtConfiguration"]["Audience"] == [{"Ref": Match.any_value()}]
        or len(authorizer["Properties"]["JwtConfiguration"]["Audience"]) == 1
    )
    for route in template.find_resources("AWS::ApiGatewayV2::Route").values():
        assert not route["Properties"].get("AuthorizationScopes")
    (client,) = template.find_resources("AWS::Cognito::UserPoolClient").values()
    assert {"openid", "email"} <= set(client["Properties"]["AllowedOAuthScopes"])
    # and the refresh token lasts a working day (the page renews the ID token with it, auth.js)
    assert client["Properties"]["RefreshTokenValidity"] == 720
    assert client["Properties"]["TokenValidityUnits"]["RefreshToken"] == "minutes"
