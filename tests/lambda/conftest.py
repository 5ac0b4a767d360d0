"""Fixtures for the labeller: a moto account with the bucket and labels table, and the function's environment."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

# The bundle puts lambda/*.py at the task root; mirror that so `import handler` works as in Lambda.
LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"
if str(LAMBDA_DIR) not in sys.path:
    sys.path.insert(0, str(LAMBDA_DIR))

# Powertools reads these when handler.py is imported (at collection), as Lambda sets them before the import.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "photo-labeler")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "HotelPhotos")

from labeller_testkit import BUCKET, ENDPOINT, MODEL_ID, REGION, TABLE, TRAINING_BUCKET, Aws  # noqa: E402

from local_aws.emulation import create_labels_table  # noqa: E402


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "TABLE_NAME": TABLE,
        "ENDPOINT_NAME": ENDPOINT,
        "MODEL_ID": MODEL_ID,
        "CONFIDENCE_THRESHOLD": "0.6",
        "HOTEL_ID_PATTERN": r"^uploads/(?P<hotel_id>[^/]+)/",
        "UPLOAD_PREFIX": "uploads/",
        "POWERTOOLS_SERVICE_NAME": "photo-labeler",
        "POWERTOOLS_METRICS_NAMESPACE": "HotelPhotos",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("TAXONOMY_FILE", "MODEL_PARAMETER_NAME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(lambda_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """Fresh moto account with the bucket and the labels table as the stack defines it."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=TRAINING_BUCKET)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_labels_table(dynamodb, TABLE)
        import handler

        handler.get_labeller.cache_clear()
        # The Logger bound sys.stdout at import (collection time); give each test its own readable stream.
        monkeypatch.setattr(handler.logger.registered_handler, "stream", io.StringIO())
        # A labeller built in an earlier test holds clients of a finished mock: start from a clean cache.
        yield Aws(s3=s3, sqs=boto3.client("sqs", region_name=REGION), dynamodb=dynamodb)
