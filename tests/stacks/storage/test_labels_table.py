"""The labels table the stack deploys and the one the local AWS kit creates come from one definition and agree."""

from __future__ import annotations

from typing import Any

import boto3
from moto import mock_aws

from local_aws.emulation import REGION, create_labels_table
from tests.stacks.conftest import Synthesized


def _keys(table: dict[str, Any]) -> dict[str, Any]:
    """Key schema, attribute types and indexes, in a form both CloudFormation and DescribeTable give."""
    return {
        "KeySchema": table["KeySchema"],
        "AttributeDefinitions": sorted(
            (d["AttributeName"], d["AttributeType"]) for d in table["AttributeDefinitions"]
        ),
        "GlobalSecondaryIndexes": sorted(
            (index["IndexName"], str(index["KeySchema"]), index["Projection"]["ProjectionType"])
            for index in table["GlobalSecondaryIndexes"]
        ),
    }


def test_the_kits_table_has_the_stacks_keys_and_indexes(no_model: Synthesized) -> None:
    # Given the synthesised labels table (the review page adds its history table beside it)
    (deployed,) = [
        table["Properties"]
        for logical_id, table in no_model.resources("AWS::DynamoDB::Table").items()
        if logical_id.startswith("StorageLabelsTable")
    ]

    # When the kit creates its table on moto
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_labels_table(dynamodb, "labels")
        local = dynamodb.describe_table(TableName="labels")["Table"]

    # Then keys, attribute types and indexes are the same, and both are on-demand
    assert _keys(local) == _keys(deployed)
    assert {index["IndexName"] for index in local["GlobalSecondaryIndexes"]} == {"by-hotel", "by-status"}
    assert deployed["BillingMode"] == local["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
