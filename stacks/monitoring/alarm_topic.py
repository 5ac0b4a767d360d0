"""The alarm topic every operator alarm notifies, and the alarm names that let its policy admit exactly them.

A topic policy replaces SNS's default policy. The one `enforce_ssl` writes only denies plain HTTP, so without a
statement for `cloudwatch.amazonaws.com` every alarm's notification fails with "not authorized to perform:
SNS:Publish", visible only in the alarm's history (AWS Knowledge Center, "Why didn't I receive an SNS
notification for my CloudWatch alarm trigger?"). The statement is held to this account and, by `aws:SourceArn`, to
alarms named `<name_prefix>-*`: every alarm that notifies the topic is named with `alarm_name` (the rollout alarms
with the endpoint's name, which starts with the prefix). The topic's key admits CloudWatch on the same terms, since
the publisher must be able to encrypt for an SSE-KMS topic.

A topic given as `alarm_topic_arn` is the deployer's: its policy (and key) must admit CloudWatch the same way
(docs/alarm-delivery.md).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.common import constants

CLOUDWATCH_PRINCIPAL = "cloudwatch.amazonaws.com"


def alarm_name(name_prefix: str, purpose: str) -> str:
    """`<name_prefix>-<purpose>`: the name every alarm that notifies the alarm topic carries."""
    return f"{name_prefix}-{purpose}"


def alarm_arn_pattern(scope: Construct, name_prefix: str) -> str:
    """arn:<partition>:cloudwatch:<region>:<account>:alarm:<name_prefix>-* (this stack's alarms)."""
    return Stack.of(scope).format_arn(
        service="cloudwatch",
        resource="alarm",
        resource_name=alarm_name(name_prefix, "*"),
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def _from_this_stacks_alarms(scope: Construct, name_prefix: str) -> dict[str, Any]:
    return {
        "StringEquals": {"aws:SourceAccount": Stack.of(scope).account},
        "ArnLike": {"aws:SourceArn": alarm_arn_pattern(scope, name_prefix)},
    }


def build_alarm_topic(scope: Construct, construct_id: str, *, name_prefix: str, key: kms.IKey) -> sns.Topic:
    """An SSE-KMS topic, TLS only, that this stack's alarms (and only they) may publish to."""
    topic = sns.Topic(
        scope,
        construct_id,
        display_name=f"{name_prefix} alarms",
        master_key=key,
        enforce_ssl=True,
    )
    conditions = _from_this_stacks_alarms(scope, name_prefix)
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowThisStacksAlarmsToPublish",
            principals=[iam.ServicePrincipal(CLOUDWATCH_PRINCIPAL)],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions=conditions,
        )
    )
    # SNS encrypts each message with the key on the publisher's behalf: CloudWatch must be able to use it.
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowThisStacksAlarmsToEncryptNotifications",
            principals=[iam.ServicePrincipal(CLOUDWATCH_PRINCIPAL)],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],
            conditions=conditions,
        )
    )
    return topic


def dead_letter_alarm(
    scope: Construct, queue: sqs.IQueue, *, name: str, description: str, topic: sns.ITopic
) -> cloudwatch.Alarm:
    """`DeadLetterQueueAlarm`: any message in the dead-letter queue `queue` notifies `topic`, and again when it is
    empty. `name` comes from `alarm_name`; `description` says what failed and the operator's first action."""
    alarm = cloudwatch.Alarm(
        scope,
        "DeadLetterQueueAlarm",
        alarm_name=name,
        alarm_description=description,
        metric=queue.metric_approximate_number_of_messages_visible(
            period=Duration.seconds(constants.ALARM_PERIOD_SECONDS), statistic=cloudwatch.Stats.MAXIMUM
        ),
        threshold=0,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    return notify(alarm, topic)


def notify(alarm: cloudwatch.Alarm, topic: sns.ITopic) -> cloudwatch.Alarm:
    """`alarm` notifies `topic` when it fires and again when it clears (the runbook's alarms all do both)."""
    action = cloudwatch_actions.SnsAction(topic)
    alarm.add_alarm_action(action)
    alarm.add_ok_action(action)
    return alarm


__all__ = [
    "CLOUDWATCH_PRINCIPAL",
    "alarm_arn_pattern",
    "alarm_name",
    "build_alarm_topic",
    "dead_letter_alarm",
    "notify",
]
