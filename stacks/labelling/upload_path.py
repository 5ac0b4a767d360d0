"""The per-upload path: S3 ObjectCreated (upload prefix) → SQS (+ DLQ) → labeller Lambda → endpoint → table."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3_notifications
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.common import constants
from stacks.common.key_policy import scope_service_statements
from stacks.config import UploadPathConfig
from stacks.labelling.labeller_function import LabellerFunction, LabellerProps
from stacks.monitoring.alarm_topic import alarm_name, dead_letter_alarm


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
        config: UploadPathConfig,
        labeller: LabellerProps,
        upload_prefix: str,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        bucket = labeller.bucket
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
        self.queue: sqs.Queue = self._build_queue(
            self.queue_key, config.function_timeout_seconds, config.max_receive_count
        )
        bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3_notifications.SqsDestination(self.queue),
            s3.NotificationKeyFilter(prefix=upload_prefix),
        )
        # "Default": the function, role and log group keep their logical IDs (see LabellerFunction).
        self.labeller: LabellerFunction = LabellerFunction(
            self,
            "Default",
            props=labeller,
            handler=constants.LAMBDA_HANDLER,
            description="Labels uploaded hotel photos with the LLaVA-NeXT endpoint",
            role_description="Photo labeller: read uploads, invoke the endpoint, write labels, write its own logs",
            log_group_name=f"/{labeller.name_prefix}/lambda/labeller",
            timeout_seconds=config.function_timeout_seconds,
            memory_mb=config.function_memory_mb,
            photo_prefix=upload_prefix,
            photo_read_reason=(
                "The function reads any photo uploaded under the upload prefix (one object per notification); "
                "objects outside the prefix stay unreadable."
            ),
            hotel_id_pattern=config.hotel_id_pattern,
            service_name=constants.POWERTOOLS_SERVICE_NAME,
        )
        self.function: lambda_.Function = self.labeller.function
        self.event_source: event_sources.SqsEventSource = event_sources.SqsEventSource(
            self.queue,
            batch_size=config.batch_size,
            max_concurrency=config.max_concurrency,
            report_batch_item_failures=True,
            # Disabled until there is an endpoint to call: messages then wait instead of burning retries. Scheduled
            # mode needs none: uploads are recorded PENDING for the windows.
            enabled=labeller.endpoint is not None or labeller.scheduled,
        )
        self.function.add_event_source(self.event_source)
        self.dlq_alarm: cloudwatch.Alarm = self._build_dlq_alarm(alarm_topic, labeller.name_prefix)

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

    def _build_dlq_alarm(self, topic: sns.ITopic, name_prefix: str) -> cloudwatch.Alarm:
        return dead_letter_alarm(
            self,
            self.dead_letter_queue,
            name=alarm_name(name_prefix, "upload-dlq"),
            description=(
                "Uploads failed labelling after every retry and wait in the dead-letter queue: check the "
                "function's logs and the endpoint, then redrive the DLQ."
            ),
            topic=topic,
        )
