"""Image bucket, access-log bucket and labels table: the security and data-model promises."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from tests.stacks.conftest import Synthesized


def _image_bucket(s: Synthesized) -> tuple[str, dict]:
    ((name, bucket),) = [
        (n, b) for n, b in s.resources("AWS::S3::Bucket").items() if n.startswith("StorageImageBucket")
    ]
    return name, bucket["Properties"]


def test_image_bucket_is_kms_encrypted_private_versioned_logged_and_purges_old_versions(
    no_model: Synthesized,
) -> None:
    _, bucket = _image_bucket(no_model)
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "Fn::GetAtt" in rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]
    assert rule["BucketKeyEnabled"] is True
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "image-bucket/"
    (lifecycle,) = bucket["LifecycleConfiguration"]["Rules"]
    assert lifecycle["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert lifecycle["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


@pytest.mark.parametrize("variant", ["no_model", "with_model"])
def test_every_bucket_denies_non_tls_access(variant: str, request: pytest.FixtureRequest) -> None:
    # Given every bucket of the stack (image, access logs, training; with a model also the backfill results)
    synthesized: Synthesized = request.getfixturevalue(variant)
    buckets = synthesized.resources("AWS::S3::Bucket")
    policies = {
        policy["Properties"]["Bucket"]["Ref"]: policy["Properties"]["PolicyDocument"]["Statement"]
        for policy in synthesized.resources("AWS::S3::BucketPolicy").values()
    }
    # Then each has a bucket policy, and it denies every request made without TLS
    assert set(policies) == set(buckets)
    for bucket, statements in policies.items():
        assert any(
            s["Effect"] == "Deny"
            and s["Action"] == "s3:*"
            and s["Principal"] == {"AWS": "*"}
            and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ), bucket


def test_data_is_retained_when_the_stack_is_deleted(no_model: Synthesized) -> None:
    for type_name in ("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::KMS::Key"):
        for resource in no_model.resources(type_name).values():
            if "QueueKey" in json.dumps(resource):
                continue
            assert resource.get("DeletionPolicy") == "Retain", type_name


def test_labels_table_matches_the_interface_keys_and_indexes(no_model: Synthesized) -> None:
    no_model.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "image_uri", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": Match.any_value()},
            "DeletionProtectionEnabled": True,
            "GlobalSecondaryIndexes": Match.array_with(
                [
                    Match.object_like(
                        {
                            "IndexName": "by-hotel",
                            "KeySchema": [
                                {"AttributeName": "hotel_id", "KeyType": "HASH"},
                                {"AttributeName": "label", "KeyType": "RANGE"},
                            ],
                            "Projection": {"ProjectionType": "ALL"},
                        }
                    ),
                    Match.object_like(
                        {
                            "IndexName": "by-status",
                            "KeySchema": [
                                {"AttributeName": "status", "KeyType": "HASH"},
                                {"AttributeName": "classified_at", "KeyType": "RANGE"},
                            ],
                        }
                    ),
                ]
            ),
        },
    )


def test_every_kms_key_rotates(no_model: Synthesized) -> None:
    keys = no_model.resources("AWS::KMS::Key")
    assert len(keys) == 2
    assert all(k["Properties"]["EnableKeyRotation"] is True for k in keys.values())
