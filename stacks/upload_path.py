"""The per-upload path: S3 ObjectCreated (upload prefix) → SQS (+ DLQ) → labeller Lambda → endpoint → table."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3_notifications
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks import constants
from stacks.async_inference import AsyncInferenceStorage
from stacks.encrypted_logs import encrypted_log_group
from stacks.inference_endpoint import InferenceEndpoint
from stacks.key_policy import scope_service_statements
from stacks.lambda_role import lambda_role
from stacks.model_store import ModelStore, model_parameter_environment
from stacks.nag import acknowledge, nag_resource

# The bundler fetches cp312 wheels for x86_64 (constants.LAMBDA_WHEEL_PLATFORMS): runtime and architecture
# must match them.
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
assert RUNTIME.name == f"python{constants.LAMBDA_PYTHON_VERSION}", "runtime and bundled wheels disagree"


def labeller_log_group_name(name_prefix: str) -> str:
    """A literal name: the data key's policy names the log group it may encrypt (stacks/encrypted_logs.py)."""
    return f"/{name_prefix}/lambda/labeller"


class UploadPath(Construct):
    """Labels every photo uploaded under the upload prefix, exactly once, with retries and a DLQ.

    Without an endpoint (no model yet), everything is deployed but the queue → Lambda mapping is disabled:
    notifications wait in the queue (up to its 14-day retention) and are labelled once a deploy with a model
    enables it. Photos older than that are for the backfill.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        bucket: s3.IBucket,
        table: dynamodb.ITable,
        data_key: kms.IKey,
        endpoint: InferenceEndpoint | None,
        endpoint_name: str,
        code: lambda_.Code,
        upload_prefix: str,
        hotel_id_pattern: str,
        confidence_threshold: float,
        taxonomy_file: str,
        metrics_namespace: str,
        model_id: str,
        batch_size: int,
        max_concurrency: int,
        max_receive_count: int,
        function_timeout_seconds: int,
        function_memory_mb: int,
        alarm_topic: sns.ITopic,
        model_registry: ModelStore | None = None,
        async_inference: AsyncInferenceStorage | None = None,
    ) -> None:
        # async_inference: endpoint.mode async; the same handler then submits instead of waiting (ENDPOINT_MODE).
        # model_registry: set only when the endpoint serves the registry's model; the function then reads the
        # model id from the registry parameter (a pipeline rollout changes the model without a deploy).
        super().__init__(scope, construct_id)
        # Its own key: S3's grant on it names the bucket, and the bucket is encrypted with the data key, so one
        # shared key would make the key and the bucket depend on each other.
        self.queue_key: kms.Key = kms.Key(
            self,
            "QueueKey",
            description="Upload notifications queue and its dead-letter queue",
            enable_key_rotation=True,
        )
        # SqsDestination admits S3 to this key (one statement without any condition): only for this bucket.
        scope_service_statements(self.queue_key, service="s3.amazonaws.com", source_arn=bucket.bucket_arn)
        self.dead_letter_queue: sqs.Queue = self._build_dead_letter_queue(self.queue_key)
        self.queue: sqs.Queue = self._build_queue(self.queue_key, function_timeout_seconds, max_receive_count)
        bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3_notifications.SqsDestination(self.queue),
            s3.NotificationKeyFilter(prefix=upload_prefix),
        )
        # Log lines name photos and hotels: encrypted with the data key like the labels they describe.
        self.log_group: logs.LogGroup = encrypted_log_group(
            self,
            "FunctionLogs",
            log_group_name=labeller_log_group_name(name_prefix),
            key=data_key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role: iam.Role = lambda_role(
            self,
            "FunctionRole",
            description="Photo labeller: read uploads, invoke the endpoint, write labels, write its own logs",
            log_group=self.log_group,
        )
        self.function: lambda_.Function = lambda_.Function(
            self,
            "Function",
            description="Labels uploaded hotel photos with the LLaVA-NeXT endpoint",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=constants.LAMBDA_HANDLER,
            code=code,
            role=self.role,
            timeout=Duration.seconds(function_timeout_seconds),
            memory_size=function_memory_mb,
            log_group=self.log_group,
            # One trace per invocation: S3 read, endpoint call and table write show up as separate segments.
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                "TABLE_NAME": table.table_name,
                "ENDPOINT_NAME": endpoint_name,
                "MODEL_ID": model_id,
                "CONFIDENCE_THRESHOLD": str(confidence_threshold),
                "HOTEL_ID_PATTERN": hotel_id_pattern,
                "UPLOAD_PREFIX": upload_prefix,
                "TAXONOMY_FILE": taxonomy_file,
                "POWERTOOLS_SERVICE_NAME": constants.POWERTOOLS_SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
                **model_parameter_environment(model_registry),
                **(async_inference.environment() if async_inference else {}),
            },
        )
        self._grant(bucket, table, data_key, endpoint, upload_prefix)
        if async_inference is not None:
            async_inference.grant_write_requests(self.role)
        if model_registry is not None:
            model_registry.grant_read_registry(self.role)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Lambda active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which support no "
            "resource-level permissions (added by aws-cdk-lib for Tracing.ACTIVE).",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to Python 3.12 on purpose: the bundle's wheels (Pillow) are fetched for cp312 and the "
            "runtime must match them; move both together (constants.LAMBDA_PYTHON_VERSION).",
        )
        self.event_source: event_sources.SqsEventSource = event_sources.SqsEventSource(
            self.queue,
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            report_batch_item_failures=True,
            # Disabled until there is an endpoint to call: messages then wait instead of burning retries.
            enabled=endpoint is not None,
        )
        self.function.add_event_source(self.event_source)
        self.dlq_alarm: cloudwatch.Alarm = self._build_dlq_alarm(alarm_topic)

    def _build_dead_letter_queue(self, key: kms.IKey) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(constants.QUEUE_RETENTION_DAYS),
        )
        # No DLQ of its own: an operator inspects and redrives it (alarm on its depth); cdk-nag's SQS3 recognises
        # a queue that is another queue's DLQ.
        return queue

    def _build_queue(self, key: kms.IKey, function_timeout: int, max_receive_count: int) -> sqs.Queue:
        return sqs.Queue(
            self,
            "Queue",
            # A KMS queue needs a customer-managed key whose policy admits S3; SqsDestination adds that grant.
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(function_timeout * constants.QUEUE_VISIBILITY_TIMEOUT_FACTOR),
            retention_period=Duration.days(constants.QUEUE_RETENTION_DAYS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=max_receive_count
            ),
        )

    def _grant(
        self,
        bucket: s3.IBucket,
        table: dynamodb.ITable,
        data_key: kms.IKey,
        endpoint: InferenceEndpoint | None,
        upload_prefix: str,
    ) -> None:
        # Read only the upload prefix, current versions only: labeller_aws.S3ObjectStore reads with IfMatch (the
        # notification's ETag) and never passes a VersionId, so s3:GetObjectVersion is not needed.
        uploads_arn = bucket.arn_for_objects(f"{upload_prefix}*")
        self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[uploads_arn]))
        # With ListBucket a deleted object reads as 404 NoSuchKey instead of 403, which the handler records as
        # MISSING; the condition keeps listings inside the upload prefix.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{upload_prefix}*"]}},
            )
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, uploads_arn)}]",
            "The function reads any photo uploaded under the upload prefix (one object per notification); "
            "objects outside the prefix stay unreadable.",
        )
        # Write only this table: single-item reads and conditional writes, no scans, no deletes, no indexes.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[table.table_arn],
            )
        )
        # The data key encrypts both the photos (read: Decrypt) and the table (DynamoDB acts for the caller:
        # Encrypt/Decrypt/GenerateDataKey). Named actions instead of grant_encrypt_decrypt's wildcards.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[data_key.key_arn],
            )
        )
        if endpoint is not None:
            endpoint.grant_invoke(self.role)

    def _build_dlq_alarm(self, topic: sns.ITopic) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            "DeadLetterQueueAlarm",
            alarm_description=(
                "Uploads failed labelling after every retry and wait in the dead-letter queue: check the "
                "function's logs and the endpoint, then redrive the DLQ."
            ),
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.seconds(constants.ALARM_PERIOD_SECONDS), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
        alarm.add_ok_action(cloudwatch_actions.SnsAction(topic))
        return alarm
