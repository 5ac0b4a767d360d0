"""Reading a synthesised template the way IAM reads it: ARNs rendered as CloudFormation would render them in one
account, and resource policies evaluated for one call (for the gate in tests/stacks/resource_policies.py).

Evaluated as IAM does for these cases: an explicit deny wins; Principal, Action, Resource and the Condition
operators below; ArnLike compares each colon-delimited part of an ARN on its own (IAM User Guide, "IAM JSON policy
elements: Condition operators"). An element or operator it does not know raises `UnsupportedPolicy`, so a policy
it cannot decide fails the gate instead of passing it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.stacks.intrinsics import ACCOUNT, REGION, placeholder, resolve

_ARNS = {
    "AWS::SNS::Topic": "arn:aws:sns:{r}:{a}:{n}",
    "AWS::SQS::Queue": "arn:aws:sqs:{r}:{a}:{n}",
    "AWS::S3::Bucket": "arn:aws:s3:::{n}",
    "AWS::KMS::Key": "arn:aws:kms:{r}:{a}:key/{n}",
    "AWS::Lambda::Function": "arn:aws:lambda:{r}:{a}:function:{n}",
    "AWS::CloudWatch::Alarm": "arn:aws:cloudwatch:{r}:{a}:alarm:{n}",
    "AWS::Events::Rule": "arn:aws:events:{r}:{a}:rule/{n}",
    "AWS::Logs::LogGroup": "arn:aws:logs:{r}:{a}:log-group:{n}:*",
    "AWS::IAM::Role": "arn:aws:iam::{a}:role/{n}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{r}:{a}:stateMachine:{n}",
    "AWS::SageMaker::Endpoint": "arn:aws:sagemaker:{r}:{a}:endpoint/{n}",
    "AWS::CloudFront::Distribution": "arn:aws:cloudfront::{a}:distribution/{n}",
}
_REFS_AN_ARN = {"AWS::SNS::Topic", "AWS::SageMaker::Endpoint", "AWS::StepFunctions::StateMachine"}
_NAME_PROPERTIES = {
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::Events::Rule": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::SageMaker::Endpoint": "EndpointName",
}
_REF_IS_AN_ID = {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Integration", "AWS::SageMaker::Model"}
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
# The SNS default policy (Amazon SNS Developer Guide, "Example cases for Amazon SNS access control"): the owner's
# account only, by AWS:SourceOwner. A topic without an AWS::SNS::TopicPolicy keeps it.
SNS_DEFAULT_POLICY = [
    {
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "sns:Publish",
        "Resource": "*",
        "Condition": {"StringEquals": {"AWS:SourceOwner": ACCOUNT}},
    }
]


class UnsupportedPolicy(AssertionError):
    """A policy uses an element or operator this evaluator cannot decide: extend it rather than pass."""


@dataclass(frozen=True)
class Delivery:
    """One sender delivering into one receiver, as the template wires it."""

    sender: str  # a service principal, or "role:<LogicalId>" for an IAM role of this account
    actions: tuple[str, ...]
    receiver: str  # logical id of the topic / queue / bucket / function / key
    resource: str  # the ARN the call names
    source_arn: str | None  # what the service acts for (aws:SourceArn)
    wired_by: str  # the logical id whose property makes the wiring
    context: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        source = f" for {self.source_arn}" if self.source_arn else ""
        return f"{self.sender} {'/'.join(self.actions)} on {self.resource}{source} (wired by {self.wired_by})"


class TemplateView:
    """A synthesised template with intrinsics rendered as CloudFormation would render them in one account."""

    def __init__(self, template: dict[str, Any], region: str = REGION) -> None:
        self.template = template
        self.region = region  # a pinned stack's own; an environment-agnostic one renders AWS::Region as REGION
        self.resources: dict[str, dict[str, Any]] = template.get("Resources", {})

    def type_of(self, logical_id: str) -> str | None:
        return self.resources.get(logical_id, {}).get("Type")

    def of_type(self, type_name: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.resources.items():
            if resource["Type"] == type_name:
                yield logical_id, resource.get("Properties", {})

    def name(self, logical_id: str) -> str:
        type_name = self.type_of(logical_id) or ""
        value = self.resources.get(logical_id, {}).get("Properties", {}).get(_NAME_PROPERTIES.get(type_name, ""))
        if value is not None:
            return str(self.resolve(value))
        return logical_id.lower() if type_name == "AWS::S3::Bucket" else logical_id

    def arn(self, logical_id: str) -> str:
        type_name = self.type_of(logical_id) or ""
        return _ARNS[type_name].format(r=self.region, a=ACCOUNT, n=self.name(logical_id))

    def render(self, logical_id: str, attribute: str | None, type_name: str | None) -> str:
        if type_name not in _ARNS and type_name not in _NAME_PROPERTIES and type_name not in _REF_IS_AN_ID:
            return placeholder(logical_id, attribute, type_name)
        name = self.name(logical_id)
        if attribute is None:
            if type_name == "AWS::SQS::Queue":
                return f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT}/{name}"
            return self.arn(logical_id) if type_name in _REFS_AN_ARN else name
        if attribute in ("Arn", "TopicArn"):
            return self.arn(logical_id).removesuffix(":*")
        if attribute == "RegionalDomainName":
            return f"{name}.s3.{self.region}.amazonaws.com"
        if attribute == "DomainName":
            return f"{name}.cloudfront.net" if type_name == "AWS::CloudFront::Distribution" else name
        return name if attribute.endswith("Name") or attribute == "Id" else placeholder(logical_id, attribute)

    def resolve(self, value: Any) -> Any:
        return resolve(value, self.template, self.render, self.region)

    def logical_id_of(self, value: Any, type_name: str) -> str | None:
        """The resource of `type_name` that `value` (a Ref / GetAtt / rendered string) names, if any."""
        rendered = self.resolve(value)
        for logical_id, _ in self.of_type(type_name):
            if rendered in (self.render(logical_id, None, type_name), self.arn(logical_id).removesuffix(":*")):
                return logical_id
        return None

    def kms_key_of(self, logical_id: str) -> str | None:
        properties = self.resources[logical_id].get("Properties", {})
        key = properties.get("KmsMasterKeyId") or properties.get("KmsKeyId")
        for rule in properties.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
            key = key or rule.get("ServerSideEncryptionByDefault", {}).get("KMSMasterKeyID")
        return self.logical_id_of(key, "AWS::KMS::Key") if key is not None else None


# --- policy evaluation ------------------------------------------------------------------------------------------


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _arn_like(pattern: str, value: str) -> bool:
    # IAM checks each of an ARN's six colon-delimited parts separately; a wildcard does not cross a colon.
    parts, values = pattern.split(":", 5), value.split(":", 5)
    return len(parts) == len(values) and all(_glob(p, v) for p, v in zip(parts, values, strict=True))


_OPERATORS = {
    "StringEquals": lambda expected, actual: expected == actual,
    "StringEqualsIgnoreCase": lambda expected, actual: expected.lower() == actual.lower(),
    "StringLike": _glob,
    "ArnEquals": lambda expected, actual: expected == actual,
    "ArnLike": _arn_like,
    "Bool": lambda expected, actual: expected.lower() == actual.lower(),
}


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _conditions_hold(conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    for operator, operands in conditions.items():
        base, if_exists = operator.removesuffix("IfExists"), operator.endswith("IfExists")
        negated = base.startswith(("StringNot", "ArnNot"))
        compare = _OPERATORS.get(base.replace("Not", "", 1) if negated else base)
        if compare is None:
            raise UnsupportedPolicy(f"condition operator {operator}")
        for key, expected in operands.items():
            actual = context.get(key.lower())
            if actual is None:
                if if_exists or negated:
                    continue
                return False
            matched = any(compare(str(value), actual) for value in listed(expected))
            if matched == negated:
                return False
    return True


def _principal_matches(principal: Any, sender: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        raise UnsupportedPolicy(f"principal {principal!r}")
    if sender.startswith("role:"):
        return any(p in ("*", ROOT, ACCOUNT) for p in listed(principal.get("AWS", [])))
    return "*" in listed(principal.get("AWS", [])) or sender in listed(principal.get("Service", []))


def decision(
    statements: list[dict[str, Any]], sender: str, action: str, resource: str, context: Mapping[str, str]
):
    """ "deny", "allow" or None (no statement applies) for one call, as IAM evaluates a resource policy."""
    allowed = False
    for statement in statements:
        if {"NotPrincipal", "NotAction", "NotResource"} & set(statement):
            raise UnsupportedPolicy(f"statement {json.dumps(statement)[:200]}")
        applies = (
            _principal_matches(statement.get("Principal", "*"), sender)
            and any(_glob(a, action, ignore_case=True) for a in listed(statement["Action"]))
            and any(_glob(r, resource) for r in listed(statement.get("Resource", "*")))
            and _conditions_hold(statement.get("Condition", {}), context)
        )
        if applies and statement["Effect"] == "Deny":
            return "deny"
        allowed = allowed or applies
    return "allow" if allowed else None
