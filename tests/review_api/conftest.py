"""Fixtures for the review API: a moto account with the versioned photo bucket and the labels table."""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

# Powertools reads these when review_api.handler is imported, as Lambda sets them before the import.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "HotelPhotos")

from tests.review_api.review_testkit import BUCKET, HISTORY_TABLE, REGION, TABLE, Account, create_tables


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "TABLE_NAME": TABLE,
        "HISTORY_TABLE_NAME": HISTORY_TABLE,
        "BUCKET_NAME": BUCKET,
        "UPLOAD_PREFIX": "uploads/",
        "POWERTOOLS_METRICS_NAMESPACE": "HotelPhotos",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TAXONOMY_FILE", raising=False)


@pytest.fixture
def account(api_env: None) -> Iterator[Account]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_tables(dynamodb)
        from review_api import handler

        handler.configure(None)  # a service from an earlier test holds clients of a finished mock
        yield Account(s3=s3, dynamodb=dynamodb)
        handler.configure(None)
