"""The image bucket (plus its access-log bucket), the labels table and the app's KMS key."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.common import constants
from stacks.common.key_policy import log_delivery_source_arn, scope_service_statements
from stacks.config import StorageConfig
from stacks.storage import labels_table


class Storage(Construct):
    """Where photos and their labels live. Data resources are retained when the stack is deleted."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        config: StorageConfig,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.key: kms.Key = self._build_key(name_prefix)
        self.access_log_bucket: s3.Bucket = self._build_access_log_bucket(config.access_log_retention_days)
        self.bucket: s3.Bucket = self._build_image_bucket(config.noncurrent_version_expiration_days)
        self.table: dynamodb.Table = self._build_table()

    def _build_key(self, name_prefix: str) -> kms.Key:
        # One customer-managed key for the bucket, table, queues and topic: its policy is where S3 (for the
        # queue notifications) and CloudWatch (for the alarm topic) are admitted, so it must be ours, not AWS's.
        key = kms.Key(
            self,
            "Key",
            alias=f"alias/{name_prefix}",
            description=f"{name_prefix}: photos, labels, queues and alarms",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # State machines logging to log groups encrypted with this key make the CDK admit log delivery to
        # kms:Decrypt* without conditions: only this account's log deliveries may use it.
        scope_service_statements(
            key, service="delivery.logs.amazonaws.com", source_arn=log_delivery_source_arn(key)
        )
        return key

    def _build_access_log_bucket(self, retention_days: int) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            # S3 server access logging can only deliver to an SSE-S3 bucket, not SSE-KMS.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            # ACLs enabled: CloudFront's standard logs (the review page) are written with an ACL grant and cannot
            # be delivered to a bucket-owner-enforced bucket; objects written with bucket-owner-full-control (S3
            # server access logs, CloudFront's) still belong to this account, and public ACLs stay blocked.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(constants.ABORT_INCOMPLETE_UPLOAD_DAYS),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        # No access logging of its own (it would recurse); cdk-nag's S1 recognises a log destination bucket.
        return bucket

    def _build_image_bucket(self, noncurrent_days: int) -> s3.Bucket:
        return s3.Bucket(
            self,
            "ImageBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            # A bucket key turns one KMS call per object into one per bucket-key period: tens of millions of
            # photos would otherwise cost more in KMS requests than in storage.
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix=constants.ACCESS_LOG_PREFIX,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="purge-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(noncurrent_days),
                    abort_incomplete_multipart_upload_after=Duration.days(constants.ABORT_INCOMPLETE_UPLOAD_DAYS),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_table(self) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            "LabelsTable",
            partition_key=dynamodb.Attribute(name=labels_table.PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # docs/interfaces.md: "all Pool photos of hotel X" and "all photos with status NEEDS_REVIEW".
        for index in labels_table.INDEXES:
            table.add_global_secondary_index(
                index_name=index.name,
                partition_key=dynamodb.Attribute(name=index.partition_key, type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name=index.sort_key, type=dynamodb.AttributeType.STRING),
                projection_type=dynamodb.ProjectionType.ALL,
            )
        return table


__all__ = ["Storage"]
