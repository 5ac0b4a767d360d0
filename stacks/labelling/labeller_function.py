"""The labeller Lambda, built one way for both of its entry points: the upload path's and the backfill's.

Both run the same code asset (lambda/handler.py: `lambda_handler`, `backfill_handler`) against the same photo
bucket, labels table, data key, endpoint and model registry, so they share everything here: the encrypted log
group, the role, the function and its environment (classification/labeller_environment.py, the contract the
Lambda reads back) and the grants. They differ in handler, sizing, log group name, the photos they may read and
their metrics `service`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from classification.labeller_environment import LabellerEnvironment
from stacks.common.encrypted_logs import encrypted_log_group
from stacks.common.lambda_bundling import ARCHITECTURE, RUNTIME
from stacks.common.lambda_role import lambda_role
from stacks.common.nag import acknowledge, acknowledge_lambda_tracing, nag_resource
from stacks.serving.async_inference import AsyncInferenceStorage
from stacks.serving.inference_endpoint import InferenceEndpoint
from stacks.storage.model_store import ModelStore, ProfileRecords


@dataclass(frozen=True)
class LabellerProps:
    """What every labeller function shares: one code asset, one photo bucket, one table, one model."""

    name_prefix: str
    code: lambda_.Code
    bucket: s3.IBucket  # the photos
    table: dynamodb.ITable  # the labels
    data_key: kms.IKey  # encrypts photos, labels and the functions' logs
    endpoint_name: str
    endpoint: InferenceEndpoint | None  # None until there is a model: nothing to invoke yet
    model_id: str  # MODEL_ID: a pinned model's URI, the registry's (a deploy-time token), or "none"
    confidence_threshold: float
    taxonomy_file: str  # relative to the project root, which is the bundle's root
    metrics_namespace: str
    # Set only when the endpoint serves the registry's model: a pipeline rollout then changes the model without
    # a deploy, so the function reads the model id from the registry parameter (MODEL_PARAMETER_NAME).
    model_registry: ModelStore | None = None
    # endpoint.mode async: the same handlers submit requests instead of waiting for answers (ENDPOINT_MODE).
    async_inference: AsyncInferenceStorage | None = None
    # The model_profile.json records of the models the endpoint may serve (None: no model yet); the functions
    # read the served one's to ask it in its profile (lambda/labeller_aws.S3ModelProfiles).
    profile_records: ProfileRecords | None = None
    base_margin_threshold: float | None = None  # BASE_MARGIN_THRESHOLD: a base-profile model's routing
    # endpoint.mode scheduled: the same handlers record PENDING; a window's job labels (lambda/scheduled_core.py).
    scheduled: bool = False


def photo_list_statement(bucket: s3.IBucket, prefix: str) -> iam.PolicyStatement:
    """s3:ListBucket kept inside `prefix` (ListObjectsV2 always sends the prefix it lists); "" is the bucket."""
    conditions = {"StringLike": {"s3:prefix": [f"{prefix}*"]}} if prefix else None
    return iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn], conditions=conditions)


class LabellerFunction(Construct):
    """Log group, role and function of one labeller entry point, with the grants every labeller needs.

    UploadPath and Backfill create it with the id "Default": CDK leaves a path component named "Default" out of
    logical IDs (aws-cdk-lib's uniqueid HIDDEN_ID), so the function, role, policy and log group keep the logical
    IDs they had when each construct built them itself. They must: the log group has a literal name, and
    CloudFormation cannot replace a named resource (a new logical ID would create the same name twice).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: LabellerProps,
        handler: str,
        description: str,
        role_description: str,
        log_group_name: str,
        timeout_seconds: int,
        memory_mb: int,
        photo_prefix: str,
        photo_read_reason: str,
        hotel_id_pattern: str,
        service_name: str,
    ) -> None:
        # photo_prefix: the photos it may read and label (UPLOAD_PREFIX); photo_read_reason: why reading every
        # object under it is the least privilege, for the cdk-nag acknowledgement.
        super().__init__(scope, construct_id)
        self.environment: LabellerEnvironment = LabellerEnvironment(
            table_name=props.table.table_name,
            endpoint_name="" if props.scheduled else props.endpoint_name,
            model_id=props.model_id,
            confidence_threshold=props.confidence_threshold,
            base_margin_threshold=props.base_margin_threshold,
            hotel_id_pattern=hotel_id_pattern,
            upload_prefix=photo_prefix,
            taxonomy_file=props.taxonomy_file,
            service_name=service_name,
            metrics_namespace=props.metrics_namespace,
            model_parameter_name=props.model_registry.parameter_name if props.model_registry else None,
            async_inference=props.async_inference.async_environment() if props.async_inference else None,
            scheduled=props.scheduled,
        )
        # Log lines name photos and hotels: encrypted with the data key like the labels they describe.
        self.log_group: logs.LogGroup = encrypted_log_group(
            self,
            "FunctionLogs",
            log_group_name=log_group_name,
            key=props.data_key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role: iam.Role = lambda_role(
            self, "FunctionRole", description=role_description, log_group=self.log_group
        )
        self.function: lambda_.Function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=props.code,
            role=self.role,
            timeout=Duration.seconds(timeout_seconds),
            memory_size=memory_mb,
            log_group=self.log_group,
            # One trace per invocation: S3 read, endpoint call and table write show up as separate segments.
            tracing=lambda_.Tracing.ACTIVE,
            environment=self.environment.to_environment(),
        )
        self._grant(props, photo_prefix, photo_read_reason)
        acknowledge_lambda_tracing(self.role)
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to Python 3.12 on purpose: the shared bundle's wheels (Pillow) are fetched for cp312 and the "
            "runtime must match them; move both together (constants.LAMBDA_PYTHON_VERSION).",
        )

    def _grant(self, props: LabellerProps, photo_prefix: str, photo_read_reason: str) -> None:
        # Each grant matches a variable of self.environment: what the function is told about, it may use.
        # Read current versions only: labeller_aws.S3ObjectStore reads with IfMatch (the notification's or the
        # listing's ETag) and never passes a VersionId, so s3:GetObjectVersion is not needed.
        photos_arn = props.bucket.arn_for_objects(f"{photo_prefix}*")
        self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[photos_arn]))
        # With ListBucket a deleted photo reads as 404 NoSuchKey (recorded MISSING) instead of 403.
        self.role.add_to_policy(photo_list_statement(props.bucket, photo_prefix))
        acknowledge(self.role, f"AwsSolutions-IAM5[Resource::{nag_resource(self, photos_arn)}]", photo_read_reason)
        # Write only this table: single-item reads and conditional writes, no scans, no deletes, no indexes.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[props.table.table_arn],
            )
        )
        # The data key encrypts both the photos (read: Decrypt) and the table (DynamoDB acts for the caller:
        # Encrypt/Decrypt/GenerateDataKey). Named actions instead of grant_encrypt_decrypt's wildcards.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[props.data_key.key_arn],
            )
        )
        if props.endpoint is not None:
            props.endpoint.grant_invoke(self.role)
        if props.async_inference is not None:
            props.async_inference.grant_write_requests(self.role)
        if props.model_registry is not None:
            props.model_registry.grant_read_registry(self.role)
        if props.profile_records is not None:
            props.profile_records.grant_read(self.role, self.role)


__all__ = ["LabellerFunction", "LabellerProps", "photo_list_statement"]
