"""How a model change reaches the endpoint: one blue/green policy and one pair of rollback alarms for both paths.

A new model reaches the endpoint two ways: `cdk deploy` (CloudFormation updates AWS::SageMaker::Endpoint with a
new endpoint config) and the training pipeline (Step Functions calls UpdateEndpoint). Both send the same
DeploymentConfig, built by `RolloutPolicy.deployment_config`, so a deploy is watched by the same alarms, rolls
traffic the same way and rolls back the same way as a pipeline rollout. The alarms are created with the endpoint,
before it (SageMaker must find them when an update starts), whether the model is pinned or comes from the registry.

Its field names are the SageMaker API's, which CloudFormation's AWS::SageMaker::Endpoint DeploymentConfig uses too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.common import constants
from stacks.config.parsing import ConfigError
from stacks.monitoring.alarm_topic import notify

if TYPE_CHECKING:
    from stacks.config import EndpointSettings

CANARY_MIN_INSTANCES = 2  # a canary of <= 50 % needs at least one instance besides it
SAGEMAKER_NAMESPACE = constants.SAGEMAKER_INVOCATION_NAMESPACE
MICROSECONDS_PER_SECOND = 1_000_000  # ModelLatency is reported in microseconds


@dataclass(frozen=True)
class RolloutPolicy:
    """Traffic shifting, bake time and rollback thresholds of every endpoint update (config: `endpoint.rollout_*`,
    `endpoint.rollback_*`; validated there)."""

    canary_percent: int  # 0: all at once; 1-50: canary share of the new fleet's instances
    canary_wait_seconds: int  # canary only: how long the canary takes traffic before the rest
    bake_seconds: int  # alarms are watched this long on the new fleet before the old one is terminated
    timeout_seconds: int  # the whole blue/green deployment
    errors_per_minute: int  # Invocation5XXErrors per minute, 2 minutes running, that roll a deployment back
    p90_latency_seconds: float  # ModelLatency p90, 3 minutes running, that rolls a deployment back

    @classmethod
    def from_settings(cls, settings: EndpointSettings) -> RolloutPolicy:
        """The policy of `photo_labeler.endpoint`, for `cdk deploy` and the training pipeline alike."""
        return cls(
            canary_percent=settings.rollout_canary_percent,
            canary_wait_seconds=settings.rollout_canary_wait_seconds,
            bake_seconds=settings.rollout_bake_seconds,
            timeout_seconds=settings.rollout_timeout_seconds,
            errors_per_minute=settings.rollback_5xx_errors_per_minute,
            p90_latency_seconds=settings.rollback_p90_model_latency_seconds,
        )

    def check_capacity(self, min_instances: int, *, key: str) -> None:
        """A canary needs an old-fleet share to keep: refuse it on a one-instance endpoint at synth."""
        if self.canary_percent and min_instances < CANARY_MIN_INSTANCES:
            raise ConfigError(
                key,
                f"a canary needs at least {CANARY_MIN_INSTANCES} instances (endpoint.min_capacity is "
                f"{min_instances}); use 0 (all at once with a bake period) or raise endpoint.min_capacity",
            )

    def deployment_config(self, alarm_names: list[str]) -> dict[str, Any]:
        """DeploymentConfig in the API's (and CloudFormation's) shape: the one definition both paths send."""
        traffic: dict[str, Any] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        if self.canary_percent:
            traffic = {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": self.canary_percent},
                "WaitIntervalInSeconds": self.canary_wait_seconds,
            }
        return {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": traffic,
                "TerminationWaitInSeconds": self.bake_seconds,
                "MaximumExecutionTimeoutInSeconds": self.timeout_seconds,
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarm_names]},
        }


class RolloutAlarms(Construct):
    """The CloudWatch alarms SageMaker watches during a blue/green deployment (any in ALARM rolls it back).

    Named literally after the endpoint: SageMaker only needs the names, the pipeline's definition reads plainly,
    and the names are known before the alarms exist.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        policy: RolloutPolicy,
        alarm_topic: sns.ITopic | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.endpoint_name = endpoint_name
        dimensions = {"EndpointName": endpoint_name, "VariantName": constants.VARIANT_NAME}
        period = Duration.seconds(constants.ALARM_PERIOD_SECONDS)
        self.errors = cloudwatch.Alarm(
            self,
            "Errors",
            alarm_name=self.alarm_names[0],
            alarm_description=(
                f"{endpoint_name}: >= {policy.errors_per_minute} 5XX errors a minute for 2 minutes (rolls a "
                "deployment back)"
            ),
            metric=cloudwatch.Metric(
                namespace=SAGEMAKER_NAMESPACE,
                metric_name="Invocation5XXErrors",
                dimensions_map=dimensions,
                statistic="Sum",
                period=period,
            ),
            threshold=policy.errors_per_minute,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,  # no traffic is not a failure
        )
        self.latency = cloudwatch.Alarm(
            self,
            "Latency",
            alarm_name=self.alarm_names[1],
            alarm_description=(
                f"{endpoint_name}: p90 model latency > {policy.p90_latency_seconds} s for 3 minutes (rolls a "
                "deployment back)"
            ),
            metric=cloudwatch.Metric(
                namespace=SAGEMAKER_NAMESPACE,
                metric_name="ModelLatency",
                dimensions_map=dimensions,
                statistic="p90",
                period=period,
            ),
            threshold=policy.p90_latency_seconds * MICROSECONDS_PER_SECOND,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if alarm_topic is not None:
            for alarm in self.alarms:
                notify(alarm, alarm_topic)

    @property
    def alarm_names(self) -> list[str]:
        return [f"{self.endpoint_name}-rollout-5xx", f"{self.endpoint_name}-rollout-latency"]

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        return [self.errors, self.latency]

    def grant_describe(self, grantee: iam.IGrantable) -> iam.Grant:
        """cloudwatch:DescribeAlarms on exactly these alarms.

        SageMaker's deployment guardrails read the alarms' state with the permissions of the role behind the
        deployment; without DescribeAlarms on them, auto-rollback cannot see an alarm fire.
        """
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["cloudwatch:DescribeAlarms"],
            resource_arns=[alarm.alarm_arn for alarm in self.alarms],
        )


__all__ = ["RolloutAlarms", "RolloutPolicy"]
