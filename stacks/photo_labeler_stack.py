"""The composition root: one construct per capability, wired together. It defines no resources of its own
beyond the shared alarm topic and the stack outputs."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks import constants
from stacks.config import AppConfig
from stacks.inference_endpoint import InferenceEndpoint
from stacks.lambda_bundling import function_code
from stacks.nag import acknowledge
from stacks.storage import Storage
from stacks.upload_path import UploadPath

NO_MODEL_ID = "none"  # MODEL_ID when no model is deployed yet (the Lambda is then never invoked)


class PhotoLabelerStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        function_code_override: lambda_.Code | None = None,
    ) -> None:
        env = (
            Environment(account=config.account, region=config.region) if config.account or config.region else None
        )
        super().__init__(
            scope,
            construct_id,
            env=env,
            description="Hotel photo labeller: image store, labels table, LLaVA-NeXT endpoint, upload path",
        )
        self.config = config
        self.endpoint_name = f"{config.name_prefix}-llava"

        self.storage = Storage(
            self,
            "Storage",
            name_prefix=config.name_prefix,
            noncurrent_version_expiration_days=config.storage.noncurrent_version_expiration_days,
            access_log_retention_days=config.storage.access_log_retention_days,
        )
        self.alarm_topic: sns.ITopic = self._alarm_topic()

        settings = config.endpoint
        self.inference: InferenceEndpoint | None = None
        if settings.model_data_uri is not None:
            self.inference = InferenceEndpoint(
                self,
                "Inference",
                endpoint_name=self.endpoint_name,
                model_data_uri=settings.model_data_uri,
                instance_type=settings.instance_type,
                lmi_image_version=settings.lmi_image_version,
                min_capacity=settings.min_capacity,
                max_capacity=settings.max_capacity,
                target_concurrent_requests_per_model=settings.target_concurrent_requests_per_model,
                scale_in_cooldown_seconds=settings.scale_in_cooldown_seconds,
                scale_out_cooldown_seconds=settings.scale_out_cooldown_seconds,
                container_startup_timeout_seconds=settings.container_startup_timeout_seconds,
                model_data_download_timeout_seconds=settings.model_data_download_timeout_seconds,
            )

        upload = config.upload
        self.upload_path = UploadPath(
            self,
            "UploadPath",
            bucket=self.storage.bucket,
            table=self.storage.table,
            data_key=self.storage.key,
            endpoint=self.inference,
            endpoint_name=self.endpoint_name,
            code=function_code_override or function_code(config.taxonomy_path),
            upload_prefix=config.storage.upload_prefix,
            hotel_id_pattern=upload.hotel_id_pattern,
            confidence_threshold=upload.confidence_threshold,
            taxonomy_file=config.taxonomy_path.relative_to(constants.PROJECT_ROOT).as_posix(),
            metrics_namespace=config.metrics_namespace,
            model_id=settings.model_data_uri or NO_MODEL_ID,
            batch_size=upload.batch_size,
            max_concurrency=upload.max_concurrency,
            max_receive_count=upload.max_receive_count,
            function_timeout_seconds=upload.function_timeout_seconds,
            function_memory_mb=upload.function_memory_mb,
            alarm_topic=self.alarm_topic,
        )
        self._acknowledge_cdk_internals()
        self._outputs()

    # Typed shortcuts for the constructs later issues wire in (training pipeline, backfill, dashboard).
    @property
    def bucket(self):
        return self.storage.bucket

    @property
    def table(self):
        return self.storage.table

    @property
    def queue(self):
        return self.upload_path.queue

    @property
    def function(self):
        return self.upload_path.function

    def _alarm_topic(self) -> sns.ITopic:
        if self.config.alarm_topic_arn is not None:
            return sns.Topic.from_topic_arn(self, "AlarmTopic", self.config.alarm_topic_arn)
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"{self.config.name_prefix} alarms",
            master_key=self.storage.key,
            enforce_ssl=True,
        )
        # CloudWatch publishes to an encrypted topic only if the key lets it encrypt.
        self.storage.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        return topic

    def _acknowledge_cdk_internals(self) -> None:
        # S3 → SQS notifications are configured by a CDK-provided custom resource (a singleton Lambda).
        handler = self.node.try_find_child("BucketNotificationsHandler050a0587b7544547bf325f094a3db834")
        if handler is None:
            return
        acknowledge(
            handler,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "CDK's own BucketNotificationsHandler runs once per deploy to configure the bucket notification; its "
            "role and managed logging policy are defined by aws-cdk-lib and cannot be replaced.",
        )
        acknowledge(
            handler,
            "AwsSolutions-IAM5[Resource::*]",
            "CDK's BucketNotificationsHandler needs s3:PutBucketNotification, which its aws-cdk-lib policy "
            "grants on *; it runs only during deployments.",
        )

    def _outputs(self) -> None:
        CfnOutput(self, "ImageBucketName", value=self.storage.bucket.bucket_name, description="Upload photos here")
        CfnOutput(
            self,
            "UploadPrefix",
            value=self.config.storage.upload_prefix,
            description="Key prefix that triggers labelling",
        )
        CfnOutput(self, "LabelsTableName", value=self.storage.table.table_name, description="One item per photo")
        CfnOutput(
            self,
            "EndpointName",
            value=self.endpoint_name,
            description="SageMaker endpoint (deployed with a model)",
        )
        CfnOutput(
            self,
            "EndpointDeployed",
            value="true" if self.inference else "false",
            description="false until endpoint.model_data_uri is set; uploads then wait in the queue",
        )
        CfnOutput(self, "UploadQueueUrl", value=self.upload_path.queue.queue_url)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.upload_path.dead_letter_queue.queue_url)
        CfnOutput(self, "LabellerFunctionName", value=self.upload_path.function.function_name)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn, description="Subscribe to get alarms")
        CfnOutput(self, "DataKeyArn", value=self.storage.key.key_arn)
