"""cdk-nag acknowledgements: one finding at a time, each with a reason a security reviewer would accept."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge `rule_id` (e.g. `AwsSolutions-IAM5[Resource::*]`) on `scope` and everything below it."""
    if len(reason) < 40:
        # A one-word reason is how suppressions rot; force a sentence.
        raise ValueError(f"acknowledgement of {rule_id} needs a real reason, got {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def acknowledge_lambda_tracing(role: IConstruct) -> None:
    """The one wildcard every traced function's role carries: X-Ray's actions, which name no resource."""
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "Lambda active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which support no "
        "resource-level permissions (added by aws-cdk-lib for Tracing.ACTIVE).",
    )


def nag_resource(scope: IConstruct, value: str) -> str:
    """How cdk-nag spells a (possibly tokenized) ARN inside a finding id, e.g. `AwsSolutions-IAM5[Resource::...]`.

    Finding ids embed the resolved value: pseudo parameters become `<AWS::Region>` in an environment-agnostic
    stack and literals (`ap-east-1`) in a pinned one, and `Fn::GetAtt` becomes `<LogicalId.Attr>`; resolving the
    same token here keeps acknowledgements valid for both.
    """
    return _render(Stack.of(scope).resolve(value))


def _render(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        ((function, argument),) = node.items()
        if function == "Ref":
            return f"<{argument}>"
        if function == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(_render(part) for part in parts)
    raise ValueError(f"cannot render {node!r} as a cdk-nag finding id")
