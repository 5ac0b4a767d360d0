"""Log groups encrypted with the app's data key, each admitted to the key by its exact ARN.

CloudWatch Logs encrypts a log group with a customer-managed key only if the key policy lets the regional logs
service principal use it. The condition on `kms:EncryptionContext:aws:logs:arn` names the one log group it
serves, so no other log group in the account (anyone's `CreateLogGroup --kms-key-id`) can use the data key.

The log group name is a literal, not CloudFormation's generated one: the key policy must name the log group, and
the log group names the key, so a generated name (`Fn::GetAtt` of the log group) would be a dependency cycle.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

# What CloudWatch Logs calls on the key (AWS's documented key policy for log group encryption).
LOGS_KEY_ACTIONS = ("kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*")


def log_group_arn(scope: Construct, log_group_name: str) -> str:
    """`arn:<partition>:logs:<region>:<account>:log-group:<name>`, the value CloudWatch Logs puts in the
    encryption context (no `:*` suffix, unlike the log group's `Arn` attribute)."""
    return Stack.of(scope).format_arn(
        service="logs",
        resource="log-group",
        resource_name=log_group_name,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def admit_log_group(key: kms.IKey, scope: Construct, log_group_name: str) -> iam.PolicyStatement:
    """Let CloudWatch Logs use `key` for the log group `log_group_name` of this stack's account and region only."""
    statement = iam.PolicyStatement(
        principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
        actions=list(LOGS_KEY_ACTIONS),
        resources=["*"],  # in a key policy, "*" is the key itself
        conditions={"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": log_group_arn(scope, log_group_name)}},
    )
    if not key.add_to_resource_policy(statement).statement_added:
        # An imported key's policy cannot be changed from this stack: the log group would fail to create.
        raise ValueError(
            f"cannot admit CloudWatch Logs to {key.node.path}: encrypt {log_group_name} with a key this stack owns"
        )
    return statement


def encrypted_log_group(
    scope: Construct,
    construct_id: str,
    *,
    log_group_name: str,
    key: kms.IKey,
    retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
) -> logs.LogGroup:
    """A log group encrypted with `key`, whose policy admits CloudWatch Logs for exactly this log group."""
    admit_log_group(key, scope, log_group_name)
    log_group = logs.LogGroup(
        scope,
        construct_id,
        log_group_name=log_group_name,
        encryption_key=key,
        retention=retention,
        removal_policy=removal_policy,
    )
    # No explicit ordering needed: CreateLogGroup with a KmsKeyId fails unless the key policy admits CloudWatch
    # Logs, and the statement is part of the key resource that KmsKeyId already references.
    return log_group


__all__ = ["admit_log_group", "encrypted_log_group", "log_group_arn"]
