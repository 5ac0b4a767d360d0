"""Autoscaling of an async endpoint: track the backlog per instance, scale to zero, and back out of zero.

Both policies are AWS's documented ones (https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html):
- target tracking on `ApproximateBacklogSizePerInstance` (AWS/SageMaker, EndpointName, Average), with the
  scalable target's minimum at 0 so an idle endpoint costs nothing;
- a step-scaling policy (+1 instance) on an alarm of `HasBacklogWithoutCapacity` >= 1 for 2 of 2 minutes: at zero
  instances the backlog *per instance* is undefined, so target tracking alone would start an instance only once
  the backlog exceeded the target; this policy starts one as soon as a request waits with no capacity.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from constructs import Construct

from stacks.config.sections import AsyncInferenceConfig
from stacks.monitoring.metrics import BACKLOG_PER_INSTANCE, HAS_BACKLOG_WITHOUT_CAPACITY, async_metric
from stacks.serving.inference_endpoint import InferenceEndpoint

SCALE_FROM_ZERO_EVALUATION_PERIODS = 2  # AWS's example: 2 of 2 one-minute periods


class AsyncScaling(Construct):
    """The two scaling policies on an existing scalable target (stacks/serving/inference_endpoint.py builds it)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AsyncInferenceConfig,
        endpoint: InferenceEndpoint,
    ) -> None:
        super().__init__(scope, construct_id)
        scalable_target, endpoint_name = endpoint.scalable_target, endpoint.endpoint_name
        # The endpoint's own cooldowns: one pair for either mode (endpoint.scale_in/out_cooldown_seconds).
        self.backlog_tracking: appscaling.TargetTrackingScalingPolicy = scalable_target.scale_to_track_metric(
            "BacklogTracking",
            target_value=config.backlog_target_per_instance,
            custom_metric=async_metric(endpoint_name, BACKLOG_PER_INSTANCE),
            scale_in_cooldown=Duration.seconds(endpoint.config.scale_in_cooldown_seconds),
            scale_out_cooldown=Duration.seconds(endpoint.config.scale_out_cooldown_seconds),
        )
        self.scale_from_zero: appscaling.StepScalingAction = appscaling.StepScalingAction(
            self,
            "ScaleOutFromZero",
            scaling_target=scalable_target,
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            metric_aggregation_type=appscaling.MetricAggregationType.AVERAGE,
            cooldown=Duration.seconds(config.scale_from_zero_cooldown_seconds),
        )
        self.scale_from_zero.add_adjustment(adjustment=1, lower_bound=0)
        self.backlog_without_capacity_alarm: cloudwatch.Alarm = cloudwatch.Alarm(
            self,
            "HasBacklogWithoutCapacity",
            alarm_description=(
                "Requests wait on the async endpoint while it has no instance: starts one (step scaling). "
                "Not an operator alarm; the scale-out itself takes minutes (instance start and model load)."
            ),
            metric=async_metric(endpoint_name, HAS_BACKLOG_WITHOUT_CAPACITY),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=SCALE_FROM_ZERO_EVALUATION_PERIODS,
            datapoints_to_alarm=SCALE_FROM_ZERO_EVALUATION_PERIODS,
            treat_missing_data=cloudwatch.TreatMissingData.MISSING,
        )
        self.backlog_without_capacity_alarm.add_alarm_action(
            cloudwatch_actions.ApplicationScalingAction(self.scale_from_zero)
        )


__all__ = ["AsyncScaling"]
