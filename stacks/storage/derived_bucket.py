"""A bucket of derived, expiring objects that one capability owns: the backfill's results, async inference's
requests and responses, scheduled mode's labelling windows.

Each capability keeps such objects in a bucket of its own so that the grants on it cover nothing else; all of them
are private, encrypted with the app's key and TLS-only like every bucket of the app, log their access, expire
what they hold, and are retained on stack deletion (the labels table is the record, but an operator may still be
reading or redriving from them).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.common import constants


def derived_bucket(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    access_log_bucket: s3.IBucket,
    access_log_prefix: str,
    expiry_rule_id: str,
    expire_after_days: int,
    expiring_prefix: str | None = None,
) -> s3.Bucket:
    """The bucket; objects under `expiring_prefix` (None: all of them) expire after `expire_after_days`."""
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        # One KMS call per bucket-key period instead of one per object: these objects are many and small.
        bucket_key_enabled=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_log_bucket,
        server_access_logs_prefix=access_log_prefix,
        lifecycle_rules=[
            s3.LifecycleRule(
                id=expiry_rule_id,
                prefix=expiring_prefix,
                expiration=Duration.days(expire_after_days),
                abort_incomplete_multipart_upload_after=Duration.days(constants.ABORT_INCOMPLETE_UPLOAD_DAYS),
            )
        ],
        removal_policy=RemovalPolicy.RETAIN,
    )


__all__ = ["derived_bucket"]
