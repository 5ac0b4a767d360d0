"""The labelling job's tests: lambda/*.py at the import root (the job's bundle puts them there, as Lambda's does),
and a moto account with the photo bucket and the labels table."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT / "lambda", ROOT / "tests" / "lambda"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from labeller_testkit import BUCKET, REGION, TABLE, Aws  # noqa: E402

from local_aws.emulation import create_labels_table  # noqa: E402


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """A fresh moto account: the versioned photo bucket and the labels table as the stack defines them."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_labels_table(dynamodb, TABLE)
        yield Aws(s3=s3, sqs=boto3.client("sqs", region_name=REGION), dynamodb=dynamodb)
