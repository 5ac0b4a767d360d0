"""The composition root: one construct per capability, wired together. It defines no resources of its own
beyond the shared alarm topic and the stack outputs."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.common import constants
from stacks.common.lambda_bundling import function_code
from stacks.common.nag import acknowledge
from stacks.config import AppConfig
from stacks.labelling.async_label_writer import AsyncLabelWriter
from stacks.labelling.backfill import BACKFILL_SERVICE_NAME, Backfill
from stacks.labelling.labeller_function import LabellerProps
from stacks.labelling.upload_path import UploadPath
from stacks.labelling.window import WINDOW_SERVICE_NAME, LabellingWindow
from stacks.monitoring.alarm_topic import build_alarm_topic
from stacks.monitoring.alarms import AsyncRef, EndpointRef, Monitoring, WindowRef
from stacks.review.page import ReviewPage
from stacks.serving import serving_properties
from stacks.serving.async_inference import AsyncInferenceStorage
from stacks.serving.async_scaling import AsyncScaling
from stacks.serving.endpoint_load import check_endpoint_load
from stacks.serving.inference_endpoint import InferenceEndpoint
from stacks.storage.model_store import ModelStore, ProfileRecords
from stacks.storage.photo_store import Storage
from stacks.training_pipeline.pipeline import TrainingPipeline

NO_MODEL_ID = "none"  # MODEL_ID when no model is deployed yet (the Lambda is then never invoked)


class PhotoLabellerStack(Stack):
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
        # Carries endpoint.mode and instance_type: changing either replaces the endpoint
        # (stacks/config/app_config.py).
        self.endpoint_name = config.endpoint_name
        # endpoint.mode scheduled: no endpoint at all; windows label PENDING photos (stacks/labelling/window.py).
        self.scheduled = config.endpoint.mode == "scheduled"
        if not self.scheduled:
            # Checked with or without an endpoint: the deploy that adds the model must not be the one that fails.
            check_endpoint_load(
                upload_max_concurrency=config.upload.max_concurrency,
                backfill_max_concurrency=config.backfill.max_concurrency,
                max_capacity=config.endpoint.max_capacity,
                engine_batch=serving_properties.engine_batch_size(serving_properties.load()),
            )

        self.storage = Storage(
            self,
            "Storage",
            name_prefix=config.name_prefix,
            config=config.storage,
        )
        self.alarm_topic: sns.ITopic = self._alarm_topic()
        self.training_config = config.training
        self.model_store = ModelStore(
            self,
            "ModelStore",
            name_prefix=config.name_prefix,
            data_key=self.storage.key,
            access_log_bucket=self.storage.access_log_bucket,
            checkpoint_retention_days=self.training_config.checkpoint_retention_days,
        )

        # A pinned URI wins; else the model registry, read by CloudFormation at deploy time (never a literal).
        self.model_data_uri: str | None = config.endpoint.model_data_uri
        self.serves_registered_model = (
            config.endpoint.model_data_uri is None and self.training_config.serve_registered_model
        )
        # A scheduled window reads the registry when it starts; only an endpoint needs the deploy-time value.
        if self.serves_registered_model and not self.scheduled:
            self.model_data_uri = self.model_store.registered_model_uri()
        # endpoint.mode async: the bucket and topics the endpoint config names (label writer after the endpoint).
        self.async_storage: AsyncInferenceStorage | None = self._async_storage()
        self.inference: InferenceEndpoint | None = self._inference()

        # One code asset, two entry points: the upload labeller and the backfill share the bundle and the model.
        self.function_code: lambda_.Code = function_code_override or function_code(config.taxonomy_path)
        self.labeller: LabellerProps = self._labeller_props()
        self.upload_path = UploadPath(
            self,
            "UploadPath",
            config=config.upload,
            labeller=self.labeller,
            upload_prefix=config.storage.upload_prefix,
            alarm_topic=self.alarm_topic,
        )
        self.async_label_writer: AsyncLabelWriter | None = self._async_completion()
        self.backfill: Backfill | None = self._backfill()
        self.window: LabellingWindow | None = self._window()
        self.training: TrainingPipeline = self._training_pipeline()
        self.review: ReviewPage | None = self._review()
        self.monitoring: Monitoring = self._monitoring()
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

    @property
    def _registry_for_labels(self) -> ModelStore | None:
        # Only an endpoint that serves the registry can change models without a deploy (a pipeline rollout); a
        # pinned model, or none, is exactly MODEL_ID.
        return self.model_store if self.serves_registered_model else None

    def _inference(self) -> InferenceEndpoint | None:
        if self.model_data_uri is None or self.scheduled:
            return None
        inference = InferenceEndpoint(
            self,
            "Inference",
            config=self.config.endpoint,
            endpoint_name=self.endpoint_name,
            model_data_uri=self.model_data_uri,
            model_read_prefix=self.model_store.models_uri if self.serves_registered_model else None,
            alarm_topic=self.alarm_topic,
            async_inference=self.async_storage.endpoint_config() if self.async_storage else None,
        )
        # Pipeline-trained models are SSE-KMS objects of the training bucket.
        self.storage.key.grant_decrypt(inference.role)
        return inference

    def _labeller_props(self) -> LabellerProps:
        """What the upload labeller, the backfill and the async label writer share."""
        return LabellerProps(
            name_prefix=self.config.name_prefix,
            code=self.function_code,
            bucket=self.storage.bucket,
            table=self.storage.table,
            data_key=self.storage.key,
            endpoint_name=self.endpoint_name,
            endpoint=self.inference,
            model_id=self.model_data_uri or NO_MODEL_ID,
            confidence_threshold=self.config.upload.confidence_threshold,
            taxonomy_file=self.config.taxonomy_path.relative_to(constants.PROJECT_ROOT).as_posix(),
            metrics_namespace=self.config.metrics_namespace,
            model_registry=self._registry_for_labels,
            async_inference=self.async_storage,
            profile_records=self._profile_records(),
            base_margin_threshold=self.config.upload.base_margin_threshold,
            scheduled=self.scheduled,
        )

    def _profile_records(self) -> ProfileRecords | None:
        """The model_profile.json the labellers may read: any registered model's, or the pinned model's."""
        if self.serves_registered_model:
            return self.model_store.profile_records()
        if self.config.endpoint.model_data_uri is not None:
            return ProfileRecords.of_model(self, self.config.endpoint.model_data_uri)
        return None

    def _backfill(self) -> Backfill | None:
        # Only with an endpoint (without one every batch would fail after its retries), or in scheduled mode,
        # where the backfill records PENDING photos for the windows.
        if self.inference is None and not self.scheduled:
            return None
        backfill = Backfill(
            self,
            "Backfill",
            config=self.config.backfill,
            labeller=self.labeller,
            access_log_bucket=self.storage.access_log_bucket,
        )
        CfnOutput(
            self,
            "BackfillStateMachineArn",
            value=backfill.state_machine.state_machine_arn,
            description="python -m tools.backfill start --prefix <prefix>",
        )
        CfnOutput(self, "BackfillResultsBucketName", value=backfill.results_bucket.bucket_name)
        if backfill.config.inventory_bucket is not None:
            CfnOutput(self, "BackfillInventoryBucket", value=backfill.config.inventory_bucket)
        return backfill

    def _window(self) -> LabellingWindow | None:
        # With a model to label with: a pinned one, or the registry's (read when each window starts).
        if not self.scheduled or (self.model_data_uri is None and not self.serves_registered_model):
            return None
        window = LabellingWindow(
            self,
            "LabellingWindow",
            config=self.config.scheduled,
            labeller=self.labeller,
            photo_prefixes=(self.config.storage.upload_prefix, self.config.backfill.source_prefix),
            model_store=self.model_store,
            pinned_model_uri=self.config.endpoint.model_data_uri,
            lmi_image_version=self.config.endpoint.lmi_image_version,
            access_log_bucket=self.storage.access_log_bucket,
            alarm_topic=self.alarm_topic,
        )
        CfnOutput(
            self,
            "LabellingWindowStateMachineArn",
            value=window.state_machine.state_machine_arn,
            description="Scheduled labelling windows (started by EventBridge Scheduler)",
        )
        CfnOutput(self, "LabellingWorkBucketName", value=window.work_bucket.bucket_name)
        return window

    def _async_storage(self) -> AsyncInferenceStorage | None:
        # Only with an endpoint: without one nothing is submitted and the upload path waits (disabled mapping).
        if self.config.endpoint.mode != "async" or self.model_data_uri is None:
            return None
        settings = self.config.async_inference
        return AsyncInferenceStorage(
            self,
            "AsyncInference",
            name_prefix=self.config.name_prefix,
            config=settings,
            data_key=self.storage.key,
            access_log_bucket=self.storage.access_log_bucket,
            alarm_topic=self.alarm_topic,
            visibility_timeout_seconds=settings.function_timeout_seconds
            * constants.QUEUE_VISIBILITY_TIMEOUT_FACTOR,
        )

    def _async_completion(self) -> AsyncLabelWriter | None:
        if self.async_storage is None or self.inference is None:
            return None
        self.async_storage.grant_endpoint(self.inference.role)
        self.async_scaling = AsyncScaling(
            self, "AsyncScaling", config=self.async_storage.config, endpoint=self.inference
        )
        writer = AsyncLabelWriter(self, "AsyncLabelWriter", labeller=self.labeller)
        CfnOutput(self, "AsyncInferenceBucketName", value=self.async_storage.bucket.bucket_name)
        CfnOutput(
            self,
            "AsyncDeadLetterQueueUrl",
            value=self.async_storage.dead_letter_queue.queue_url,
            description="Notifications of photos whose async inference failed every attempt",
        )
        return writer

    def _training_pipeline(self) -> TrainingPipeline:
        training = TrainingPipeline(
            self,
            "TrainingPipeline",
            name_prefix=self.config.name_prefix,
            config=self.training_config,
            store=self.model_store,
            endpoint_name=self.endpoint_name,
            # The pipeline rolls out only to an endpoint that serves the registry: a pinned model stays pinned.
            rollout_target=self.inference if self.serves_registered_model else None,
            model_pinned=self.config.endpoint.model_data_uri is not None,
            confidence_threshold=self.config.upload.confidence_threshold,
            alarm_topic=self.alarm_topic,
            probe_code=self.function_code,
            taxonomy_file=self.labeller.taxonomy_file,
        )
        CfnOutput(
            self,
            "TrainingStateMachineArn",
            value=training.state_machine.state_machine_arn,
            description="aws stepfunctions start-execution --state-machine-arn <this> --input file://run.json",
        )
        CfnOutput(self, "TrainingBucketName", value=self.model_store.bucket.bucket_name, description="datasets/")
        CfnOutput(self, "ModelRegistryParameter", value=self.model_store.parameter_name, description="Approved")
        return training

    def _review(self) -> ReviewPage | None:
        settings = self.config.review
        if not settings.enabled:
            return None
        review = ReviewPage(
            self,
            "Review",
            name_prefix=self.config.name_prefix,
            photo_bucket=self.storage.bucket,
            table=self.storage.table,
            data_key=self.storage.key,
            access_log_bucket=self.storage.access_log_bucket,
            upload_prefix=self.config.storage.upload_prefix,
            taxonomy_file=self.config.taxonomy_path,
            metrics_namespace=self.config.metrics_namespace,
            config=settings,
        )
        CfnOutput(self, "ReviewPageUrl", value=review.url, description="the review page for the content team")
        CfnOutput(self, "ReviewUserPoolId", value=review.user_pool.user_pool_id, description="admin-create-user")
        CfnOutput(
            self,
            "ReviewHistoryTableName",
            value=review.history_table.table_name,
            description="every review decision, override and undo (tools.review_export --history-table)",
        )
        CfnOutput(
            self,
            "ReviewDistributionDomainName",
            value=review.distribution.distribution_domain_name,
            description="CNAME / alias target of review.domain_name",
        )
        return review

    def _monitoring(self) -> Monitoring:
        monitoring = Monitoring(
            self,
            "Monitoring",
            config=self.config.monitoring,
            name_prefix=self.config.name_prefix,
            metrics_namespace=self.config.metrics_namespace,
            labels=self.config.taxonomy.labels,
            queue=self.upload_path.queue,
            dead_letter_queue=self.upload_path.dead_letter_queue,
            dlq_alarm=self.upload_path.dlq_alarm,
            upload_function=self.upload_path.function,
            alarm_topic=self.alarm_topic,
            endpoint=EndpointRef(self.endpoint_name) if self.inference else None,
            backfill_state_machine=self.backfill.state_machine if self.backfill else None,
            backfill_function=self.backfill.function if self.backfill else None,
            backfill_service_name=BACKFILL_SERVICE_NAME if self.backfill else None,
            training_failed_alarm=self.training.failure_alarm,
            rollout_alarms=self.inference.rollout_alarms.alarms if self.inference else (),
            review_backlog_probe_minutes=(self.config.review.backlog_probe_minutes if self.review else None),
            async_inference=self._async_monitoring(),
            window=(
                WindowRef(self.window.state_machine, WINDOW_SERVICE_NAME, self.window.alarms)
                if self.window
                else None
            ),
        )
        CfnOutput(self, "DashboardName", value=monitoring.dashboard.dashboard_name)
        return monitoring

    def _async_monitoring(self) -> AsyncRef | None:
        if self.async_storage is None:
            return None
        return AsyncRef(
            endpoint_name=self.endpoint_name,
            dead_letter_queue=self.async_storage.dead_letter_queue,
            dlq_alarm=self.async_storage.dlq_alarm,
            backlog_age_alarm_seconds=self.async_storage.config.backlog_age_alarm_seconds,
        )

    def _alarm_topic(self) -> sns.ITopic:
        if self.config.alarm_topic_arn is not None:
            return sns.Topic.from_topic_arn(self, "AlarmTopic", self.config.alarm_topic_arn)
        return build_alarm_topic(self, "AlarmTopic", name_prefix=self.config.name_prefix, key=self.storage.key)

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
            description="false until endpoint.model_data_uri or training.serve_registered_model; uploads wait",
        )
        CfnOutput(self, "UploadQueueUrl", value=self.upload_path.queue.queue_url)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.upload_path.dead_letter_queue.queue_url)
        CfnOutput(self, "LabellerFunctionName", value=self.upload_path.function.function_name)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn, description="Subscribe to get alarms")
        CfnOutput(self, "DataKeyArn", value=self.storage.key.key_arn)
