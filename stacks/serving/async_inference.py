"""endpoint.mode async: the endpoint's AsyncInferenceConfig, its request/response bucket, and the label writer.

    upload / backfill Lambda ──PutObject──► bucket requests/<id>/{request,ticket}.json
                             ──InvokeEndpointAsync(InputLocation, InferenceId)──► endpoint (queue, scales to 0)
    endpoint ──► bucket responses/ | failures/ ──► SNS success | error topic ──► SQS (+ DLQ) ──► label writer
    label writer (lambda/async_handler.py) ──conditional PutItem──► labels table  (or resubmits, then the DLQ)

Two constructs because the endpoint sits between them: AsyncInferenceStorage (bucket, topics, queue, here) is what
the endpoint config names; AsyncLabelWriter (stacks/labelling/async_label_writer.py) needs the endpoint (it
resubmits failed inferences). Everything is encrypted: the bucket and SageMaker's output with the data key
(OutputConfig.KmsKeyId), topics and queues with their own key, which admits SNS only for these topics.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from classification.labeller_environment import DEFAULT_REQUEST_PREFIX, AsyncEnvironment
from stacks.common import constants
from stacks.common.key_policy import scope_service_statements
from stacks.common.nag import acknowledge, nag_resource
from stacks.config.sections import AsyncInferenceConfig
from stacks.monitoring.alarm_topic import alarm_name, dead_letter_alarm
from stacks.storage.derived_bucket import derived_bucket

REQUEST_PREFIX = DEFAULT_REQUEST_PREFIX  # requests/: the Lambda's default for an unset ASYNC_REQUEST_PREFIX
OUTPUT_PREFIX = "responses/"
FAILURE_PREFIX = "failures/"
ACCESS_LOG_PREFIX = "async-inference/"


class AsyncInferenceStorage(Construct):
    """The request/response bucket, the Success/Error topics and the notification queue (+ DLQ)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        config: AsyncInferenceConfig,
        data_key: kms.IKey,
        access_log_bucket: s3.IBucket,
        alarm_topic: sns.ITopic,
        visibility_timeout_seconds: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.data_key = data_key
        self.bucket: s3.Bucket = self._build_bucket(access_log_bucket)
        # Two keys: the queue key's policy names the topics (SNS encrypts for them), and a topic encrypted with
        # that same key would depend on its own policy, a cycle.
        self.topic_key: kms.Key = kms.Key(
            self, "TopicKey", description="Async inference notification topics", enable_key_rotation=True
        )
        self.queue_key: kms.Key = kms.Key(
            self,
            "QueueKey",
            description="Async inference notification queue and its DLQ",
            enable_key_rotation=True,
        )
        self.topic_names = (f"{name_prefix}-async-success", f"{name_prefix}-async-error")
        topic_pattern = Stack.of(self).format_arn(service="sns", resource=f"{name_prefix}-async-*")
        scope_service_statements(self.queue_key, service="sns.amazonaws.com", source_arn=topic_pattern)
        self.success_topic: sns.Topic = self._topic("SuccessTopic", self.topic_names[0])
        self.error_topic: sns.Topic = self._topic("ErrorTopic", self.topic_names[1])
        self.dead_letter_queue: sqs.Queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.queue_key,
            enforce_ssl=True,
            retention_period=Duration.days(constants.QUEUE_RETENTION_DAYS),
        )
        self.queue: sqs.Queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.queue_key,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(visibility_timeout_seconds),
            retention_period=Duration.days(constants.QUEUE_RETENTION_DAYS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=config.max_receive_count
            ),
        )
        for topic in (self.success_topic, self.error_topic):
            # Raw delivery: the message body is SageMaker's JSON (async_core.parse_notification reads both forms).
            topic.add_subscription(subscriptions.SqsSubscription(self.queue, raw_message_delivery=True))
        self.dlq_alarm: cloudwatch.Alarm = self._dlq_alarm(alarm_topic, name_prefix)

    # -- what the endpoint and the Lambdas are given -------------------------------------------------------

    @property
    def request_prefix(self) -> str:
        return REQUEST_PREFIX

    def endpoint_config(self) -> dict[str, Any]:
        """AsyncInferenceConfig in the API's shape, which CloudFormation's AWS::SageMaker::EndpointConfig shares:
        the one definition the stack's endpoint config carries and a pipeline rollout copies into its own."""
        bucket = self.bucket.bucket_name
        return {
            "ClientConfig": {
                "MaxConcurrentInvocationsPerInstance": self.config.max_concurrent_invocations_per_instance
            },
            "OutputConfig": {
                "S3OutputPath": f"s3://{bucket}/{OUTPUT_PREFIX}",
                "S3FailurePath": f"s3://{bucket}/{FAILURE_PREFIX}",
                # SageMaker encrypts the responses it writes with the data key, like the requests.
                "KmsKeyId": self.data_key.key_arn,
                "NotificationConfig": {
                    "SuccessTopic": self.success_topic.topic_arn,
                    "ErrorTopic": self.error_topic.topic_arn,
                },
            },
        }

    def async_environment(self) -> AsyncEnvironment:
        """ENDPOINT_MODE=async and the async settings, for the submitting Lambdas and the label writer."""
        return AsyncEnvironment(
            request_bucket=self.bucket.bucket_name,
            request_prefix=REQUEST_PREFIX,
            request_ttl_seconds=self.config.request_ttl_seconds,
            invocation_timeout_seconds=self.config.invocation_timeout_seconds,
            max_attempts=self.config.max_attempts,
        )

    def grant_write_requests(self, role: iam.IRole) -> None:
        """Write requests and tickets: what a submitting Lambda needs besides InvokeEndpointAsync (the endpoint's
        grant_invoke) and the data key (it already encrypts with it)."""
        requests_arn = self.bucket.arn_for_objects(f"{REQUEST_PREFIX}*")
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=[requests_arn]))
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, requests_arn)}]",
            "Each photo's request and ticket go under requests/<inference id>/ of the async inference bucket; the "
            "ids are computed per photo version, so the grant names the prefix only.",
        )

    def grant_endpoint(self, role: iam.IRole) -> None:
        """SageMaker's execution role: read requests, write responses/failures, publish the notifications."""
        requests_arn = self.bucket.arn_for_objects(f"{REQUEST_PREFIX}*")
        outputs = [
            self.bucket.arn_for_objects(f"{OUTPUT_PREFIX}*"),
            self.bucket.arn_for_objects(f"{FAILURE_PREFIX}*"),
        ]
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[requests_arn]))
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=outputs))
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[self.data_key.key_arn])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["sns:Publish"], resources=[self.success_topic.topic_arn, self.error_topic.topic_arn]
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[self.topic_key.key_arn])
        )
        for arn, what in (
            (requests_arn, "reads the request SageMaker was given"),
            (outputs[0], "writes each response under a name SageMaker generates"),
            (outputs[1], "writes each failure under a name SageMaker generates"),
        ):
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag_resource(self, arn)}]",
                f"Async inference {what}; the grant is limited to that prefix of the async inference bucket.",
            )

    # -- resources ----------------------------------------------------------------------------------------

    def _build_bucket(self, access_log_bucket: s3.IBucket) -> s3.Bucket:
        # Requests hold normalised photos: the bucket outlives a stack deletion until an operator empties it.
        return derived_bucket(
            self,
            "Bucket",
            key=self.data_key,
            access_log_bucket=access_log_bucket,
            access_log_prefix=ACCESS_LOG_PREFIX,
            expiry_rule_id="expire-async-inference-objects",
            expire_after_days=self.config.object_retention_days,
        )

    def _topic(self, construct_id: str, name: str) -> sns.Topic:
        return sns.Topic(self, construct_id, topic_name=name, master_key=self.topic_key, enforce_ssl=True)

    def _dlq_alarm(self, topic: sns.ITopic, name_prefix: str) -> cloudwatch.Alarm:
        return dead_letter_alarm(
            self,
            self.dead_letter_queue,
            name=alarm_name(name_prefix, "async-dlq"),
            description=(
                "Async inference notifications failed every retry (inference failed max_attempts times, or the "
                "label writer cannot record them): see the label writer's logs; re-run the backfill over the "
                "photos' prefix to submit them again."
            ),
            topic=topic,
        )


__all__ = ["AsyncInferenceConfig", "AsyncInferenceStorage"]
