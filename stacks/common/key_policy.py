"""Confused-deputy conditions on the key-policy statements the CDK adds for AWS services.

Some L2 constructs write service-principal statements into a customer-managed key's policy without any condition:
a state machine with an encrypted log group admits `delivery.logs.amazonaws.com` to `kms:Decrypt*`, and an SQS
destination of an S3 notification admits `s3.amazonaws.com` to `kms:GenerateDataKey*`/`kms:Decrypt`. Without
`aws:SourceAccount`/`aws:SourceArn` any account's use of that service could ask for the key (AWS's guidance:
https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html). The statements are added after our code
runs (at binding/synthesis), so an aspect adds the conditions to the rendered policy.
"""

from __future__ import annotations

import jsii
from aws_cdk import Aspects, IAspect, Stack
from aws_cdk import aws_kms as kms
from constructs import IConstruct

SOURCE_KEYS = ("aws:SourceAccount", "aws:SourceArn")


@jsii.implements(IAspect)
class _ScopeServiceStatements:
    def __init__(self, service: str, source_arn: str) -> None:
        self._service = service
        self._source_arn = source_arn

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, kms.CfnKey):
            return
        stack = Stack.of(node)
        document = stack.resolve(node.key_policy)
        account = stack.resolve(stack.account)
        source_arn = stack.resolve(self._source_arn)
        for statement in document["Statement"]:
            if statement.get("Principal", {}).get("Service") != self._service:
                continue
            conditions = statement.setdefault("Condition", {})
            conditions.setdefault("StringEquals", {})["aws:SourceAccount"] = account
            if not any("aws:SourceArn" in operands for operands in conditions.values()):
                conditions.setdefault("ArnLike", {})["aws:SourceArn"] = source_arn
        node.key_policy = document


def scope_service_statements(key: kms.IKey, *, service: str, source_arn: str) -> None:
    """Every statement of `key`'s policy for `service` gets `aws:SourceAccount` = this account and, unless it
    already names one, `aws:SourceArn` like `source_arn` (the resource the service acts for)."""
    Aspects.of(key).add(_ScopeServiceStatements(service, source_arn))


def log_delivery_source_arn(scope: IConstruct) -> str:
    """CloudWatch Logs resources of this account and region: what vended-log delivery acts for."""
    return Stack.of(scope).format_arn(service="logs", resource="*")


__all__ = ["SOURCE_KEYS", "log_delivery_source_arn", "scope_service_statements"]
