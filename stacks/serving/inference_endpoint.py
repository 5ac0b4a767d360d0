"""The SageMaker real-time endpoint: DJL LMI + vLLM serving the fine-tuned LLaVA-NeXT, with autoscaling.

Model lifecycle: CloudFormation owns the endpoint. Its model URI is either pinned (`endpoint.model_data_uri`) or
read at deploy time from the training pipeline's registry parameter (stacks/storage/model_store.py); a new value
replaces the model and endpoint config (generated names) and updates the endpoint in place with SageMaker's
blue/green rollout. The pipeline's own UpdateEndpoint registers the model it rolled out, so a later deploy
re-creates the same model instead of reverting it.

Both paths roll out the same way: the endpoint carries the DeploymentConfig of stacks/serving/rollout.py
(blue/green, automatic rollback on the 5XX and latency alarms created here, before the endpoint), the same one
the pipeline sends with its UpdateEndpoint; a `cdk deploy` that changes the model is watched and rolled back
like a pipeline rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.common import constants
from stacks.common.container_images import grant_ecr_pull
from stacks.common.lmi_image import LmiImageTable, default_table
from stacks.common.nag import acknowledge, nag_resource
from stacks.config import EndpointSettings
from stacks.serving import serving_properties
from stacks.serving.rollout import RolloutAlarms, RolloutPolicy
from stacks.storage.model_store import grant_read_model

# Where a canary that the endpoint's capacity cannot hold is reported.
CANARY_CONFIG_KEY = "photo_labeler.endpoint.rollout_canary_percent"


class InferenceEndpoint(Construct):
    """Model (network-isolated, weights from an uncompressed S3 prefix) → endpoint config → endpoint."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EndpointSettings,
        endpoint_name: str,
        model_data_uri: str,
        alarm_topic: sns.ITopic | None = None,
        serving_options: dict[str, str] | None = None,
        image_table: LmiImageTable | None = None,
        model_read_prefix: str | None = None,
        async_inference: Mapping[str, Any] | None = None,
    ) -> None:
        # model_data_uri: the pinned URI, or the registry's value resolved at deploy time
        # (stacks/storage/model_store.py); async_inference: endpoint.mode async, AsyncInferenceConfig in the API
        # shape (stacks/serving/async_inference.py): the endpoint config carries it (a pipeline rollout copies
        # it), callers get sagemaker:InvokeEndpointAsync, and stacks/serving/async_scaling.py attaches the
        # scaling policies instead.
        super().__init__(scope, construct_id)
        self.config = config
        self.async_inference = async_inference
        self.invoke_action = "sagemaker:InvokeEndpointAsync" if async_inference else "sagemaker:InvokeEndpoint"
        options = serving_options if serving_options is not None else serving_properties.load()
        loading_timeout = int(options.get("option.model_loading_timeout", "0"))
        if loading_timeout > config.container_startup_timeout_seconds:
            raise ValueError(
                f"option.model_loading_timeout ({loading_timeout} s) in serving.properties exceeds "
                f"endpoint.container_startup_timeout_seconds ({config.container_startup_timeout_seconds} s): "
                "SageMaker would kill the container while LMI is still loading the model"
            )
        self.endpoint_name = endpoint_name
        self.model_data_uri = model_data_uri
        self.serving_environment: dict[str, str] = serving_properties.to_environment(options)
        self.image_uri: str = (image_table or default_table()).image_uri(self, config.lmi_image_version)
        # A model URI resolved at deploy time (the training pipeline's registry) is not a literal prefix: the
        # caller then names the prefix every registered model lives under.
        self.role: iam.Role = self._build_role(
            endpoint_name, model_read_prefix or model_data_uri, image_table or default_table()
        )
        self.model: sagemaker.CfnModel = self._build_model()
        self.endpoint_config: sagemaker.CfnEndpointConfig = self._build_endpoint_config(
            # CreateEndpoint needs one instance; an async endpoint then scales to min_capacity (0) when idle.
            config.instance_type,
            max(1, config.min_capacity),
            config.container_startup_timeout_seconds,
            config.model_data_download_timeout_seconds,
        )
        # One rollout policy for `cdk deploy` and the pipeline (stacks/serving/rollout.py).
        rollout = RolloutPolicy.from_settings(config)
        rollout.check_capacity(config.min_capacity, key=CANARY_CONFIG_KEY)
        self.rollout_policy = rollout
        self.rollout_alarms: RolloutAlarms = RolloutAlarms(
            self, "RolloutAlarms", endpoint_name=endpoint_name, policy=rollout, alarm_topic=alarm_topic
        )
        # Deployment guardrails watch the alarms with the execution role's permissions (AWS: "Ensure that your IAM
        # execution role has permission to perform cloudwatch:DescribeAlarms on the auto-rollback alarms").
        self.rollout_alarms.grant_describe(self.role)
        self.endpoint: sagemaker.CfnEndpoint = self._build_endpoint(endpoint_name)
        # `Ref` of AWS::SageMaker::Endpoint is its ARN: the exact resource for sagemaker:InvokeEndpoint.
        self.endpoint_arn: str = self.endpoint.ref
        self.scalable_target: appscaling.ScalableTarget = self._build_autoscaling(
            config.min_capacity,
            config.max_capacity,
            config.target_concurrent_requests_per_model,
            config.scale_in_cooldown_seconds,
            config.scale_out_cooldown_seconds,
        )

    @property
    def deployment_config(self) -> dict[str, Any]:
        """The DeploymentConfig every update of this endpoint uses (CloudFormation's and the pipeline's)."""
        return self.rollout_policy.deployment_config(self.rollout_alarms.alarm_names)

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=[self.invoke_action], resource_arns=[self.endpoint_arn]
        )

    def _build_role(self, endpoint_name: str, model_data_uri: str, table: LmiImageTable) -> iam.Role:
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker model {endpoint_name}: read its weights, pull the LMI image, write logs",
        )
        objects_arn = grant_read_model(role, model_data_uri)
        # The image lives in an AWS-owned account that differs by region: the grant names this region's one.
        grant_ecr_pull(role, self.image_uri, table.repository)
        self._grant_logs(role, endpoint_name)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": constants.SAGEMAKER_METRICS_NAMESPACE}},
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource-level permissions; "
            "PutMetricData is limited to SageMaker's endpoint namespace by a condition.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, objects_arn)}]",
            "The model is a directory of files (S3Prefix model data); reading is limited to that one prefix.",
        )
        return role

    def grant_container_logs(self, endpoint_name: str) -> None:
        """Let this model's containers log under another endpoint serving it (the pipeline's probe endpoint)."""
        self._grant_logs(self.role, endpoint_name)

    def _grant_logs(self, role: iam.Role, endpoint_name: str) -> None:
        log_group_arn = Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{constants.SAGEMAKER_LOG_GROUP_PREFIX}/{endpoint_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[log_group_arn],
            )
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, log_group_arn)}]",
            "SageMaker names one log stream per instance and container at run time; the grant is limited to "
            "the log group of one endpoint that serves this model.",
        )

    def _build_model(self) -> sagemaker.CfnModel:
        model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            # The container reaches nothing: weights are mounted by SageMaker, the image is pulled by the agent.
            enable_network_isolation=True,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=self.image_uri,
                mode="SingleModel",
                environment=self.serving_environment,
                model_data_source=sagemaker.CfnModel.ModelDataSourceProperty(
                    s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                        s3_uri=self.model_data_uri,
                        s3_data_type="S3Prefix",
                        # The training job writes an uncompressed directory: no 15 GB tarball to build or unpack.
                        compression_type="None",
                    )
                ),
            ),
        )
        # CreateModel checks the role's permissions: the role's policy (not only the role) must exist first.
        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            model.node.add_dependency(policy)
        return model

    def _build_endpoint_config(
        self, instance_type: str, initial_count: int, startup_timeout: int, download_timeout: int
    ) -> sagemaker.CfnEndpointConfig:
        # No KmsKeyId on purpose: ml.g5 instances store on local NVMe, encrypted by the instance's hardware
        # module, and SageMaker rejects a KmsKeyId for instance types with local storage.
        config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=constants.VARIANT_NAME,
                    model_name=self.model.attr_model_name,
                    instance_type=instance_type,
                    initial_instance_count=initial_count,
                    container_startup_health_check_timeout_in_seconds=startup_timeout,
                    model_data_download_timeout_in_seconds=download_timeout,
                    # Requests take ~0.7-1 s each and are prefill-bound: send each to the least busy instance
                    # rather than at random.
                    routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                        routing_strategy="LEAST_OUTSTANDING_REQUESTS"
                    ),
                )
            ],
        )
        if self.async_inference is not None:
            # The dict a pipeline rollout sends too (API and CloudFormation share the field names).
            config.add_property_override("AsyncInferenceConfig", dict(self.async_inference))
        return config

    def _build_endpoint(self, endpoint_name: str) -> sagemaker.CfnEndpoint:
        endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            # Keep the instance count autoscaling has reached: the new fleet starts at today's load, as in the
            # pipeline's UpdateEndpoint. Instance type and model still come from the new endpoint config.
            retain_all_variant_properties=True,
        )
        # The same dict the pipeline sends (API and CloudFormation share the field names), so the two paths cannot
        # drift; the typed L1 struct would need a second spelling of it.
        endpoint.add_property_override("DeploymentConfig", self.deployment_config)
        # SageMaker looks the rollback alarms up by name when an update starts: they must exist first.
        endpoint.node.add_dependency(self.rollout_alarms)
        return endpoint

    def _build_autoscaling(
        self, min_capacity: int, max_capacity: int, target: float, scale_in: int, scale_out: int
    ) -> appscaling.ScalableTarget:
        target_resource = appscaling.ScalableTarget(
            self,
            "ScalableTarget",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self.endpoint.attr_endpoint_name}/variant/{constants.VARIANT_NAME}",
            scalable_dimension=constants.SCALABLE_DIMENSION,
            min_capacity=min_capacity,
            max_capacity=max_capacity,
        )
        if self.async_inference is not None:
            return target_resource  # async: backlog policies (stacks/serving/async_scaling.py)
        # ConcurrentRequestsPerModel is emitted every 10 s and counts requests in flight, which is what saturates
        # an LLM container; InvocationsPerInstance is per minute and blind to long requests.
        target_resource.scale_to_track_metric(
            "ConcurrentRequestsTracking",
            target_value=target,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_CONCURRENT_REQUESTS_PER_MODEL_HIGH_RESOLUTION,
            scale_in_cooldown=Duration.seconds(scale_in),
            scale_out_cooldown=Duration.seconds(scale_out),
        )
        return target_resource
