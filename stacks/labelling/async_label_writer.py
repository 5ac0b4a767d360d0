"""endpoint.mode async, the completion side: the label writer (lambda/async_handler.py).

    endpoint ──► bucket responses/ | failures/ ──► SNS success | error topic ──► SQS (+ DLQ) ──► label writer
    label writer ──conditional PutItem──► labels table  (or resubmits with InvokeEndpointAsync, then the DLQ)

It is built from the same LabellerProps as the upload and backfill labellers (one code asset, one table, one
model), after the endpoint, which it may call again.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from constructs import Construct

from classification.labeller_environment import LabellerEnvironment
from stacks.common import constants
from stacks.common.encrypted_logs import encrypted_log_group
from stacks.common.lambda_role import lambda_role
from stacks.common.nag import acknowledge, acknowledge_lambda_tracing, nag_resource
from stacks.labelling.labeller_function import LabellerProps
from stacks.serving.async_inference import OUTPUT_PREFIX, REQUEST_PREFIX, AsyncInferenceStorage

ASYNC_HANDLER = "async_handler.lambda_handler"  # docs/interfaces.md


class AsyncLabelWriter(Construct):
    """The completion Lambda: notification queue → lambda/async_handler.py → labels table (or resubmission)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        labeller: LabellerProps,
    ) -> None:
        super().__init__(scope, construct_id)
        storage, endpoint = labeller.async_inference, labeller.endpoint
        if storage is None or endpoint is None:
            raise ValueError("the async label writer needs the async inference storage and the endpoint")
        config = storage.config
        self.log_group: logs.LogGroup = encrypted_log_group(
            self,
            "FunctionLogs",
            log_group_name=f"/{labeller.name_prefix}/lambda/async-label-writer",
            key=storage.data_key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role: iam.Role = lambda_role(
            self,
            "FunctionRole",
            description="Async label writer: read async responses and tickets, write labels, resubmit failures",
            log_group=self.log_group,
        )
        self.function: lambda_.Function = lambda_.Function(
            self,
            "Function",
            description="Records the async endpoint's answers in the labels table",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler=ASYNC_HANDLER,
            code=labeller.code,
            role=self.role,
            timeout=Duration.seconds(config.function_timeout_seconds),
            memory_size=config.function_memory_mb,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            # The labellers' contract without HOTEL_ID_PATTERN, UPLOAD_PREFIX and MODEL_PARAMETER_NAME: the writer
            # takes the photo's hotel and model from the ticket its submitter wrote.
            environment=LabellerEnvironment(
                table_name=labeller.table.table_name,
                endpoint_name=labeller.endpoint_name,
                model_id=labeller.model_id,
                confidence_threshold=labeller.confidence_threshold,
                base_margin_threshold=labeller.base_margin_threshold,
                taxonomy_file=labeller.taxonomy_file,
                service_name=constants.POWERTOOLS_SERVICE_NAME,
                metrics_namespace=labeller.metrics_namespace,
                async_inference=storage.async_environment(),
            ).to_environment(),
        )
        self._grant(storage, labeller.table, endpoint.endpoint_arn)
        if labeller.profile_records is not None:
            # The answer is read in the profile of the model its ticket names.
            labeller.profile_records.grant_read(self.role, self.role)
        self.function.add_event_source(
            event_sources.SqsEventSource(
                storage.queue,
                batch_size=config.batch_size,
                max_concurrency=config.max_concurrency,
                report_batch_item_failures=True,
            )
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to Python 3.12 on purpose: the shared bundle's wheels (Pillow) are fetched for cp312 and the "
            "runtime must match them; move both together (constants.LAMBDA_PYTHON_VERSION).",
        )

    def _grant(self, storage: AsyncInferenceStorage, table: dynamodb.ITable, endpoint_arn: str) -> None:
        role = self.role
        # Tickets (requests/) and SageMaker's responses; failures are read from the notification's reason.
        readable = [
            storage.bucket.arn_for_objects(f"{REQUEST_PREFIX}*"),
            storage.bucket.arn_for_objects(f"{OUTPUT_PREFIX}*"),
        ]
        role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=readable))
        # ListBucket turns a missing response into 404 (handled as a failed inference) instead of 403.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[storage.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{REQUEST_PREFIX}*", f"{OUTPUT_PREFIX}*"]}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[table.table_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[storage.data_key.key_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpointAsync"], resources=[endpoint_arn])
        )
        for arn, what in (
            (readable[0], "reads the ticket stored beside each request (requests/<inference id>/ticket.json)"),
            (readable[1], "reads the response SageMaker wrote under a generated name"),
        ):
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag_resource(self, arn)}]",
                f"The label writer {what}; the grant is limited to that prefix of the async inference bucket.",
            )
        acknowledge_lambda_tracing(role)
