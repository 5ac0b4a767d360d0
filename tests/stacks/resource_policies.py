"""The resource-policy completeness gate: every delivery a template wires is allowed where it lands.

A resource policy replaces the service's default. When a topic, queue, bucket, function or key has one, the AWS
service that the template wires to deliver into it must be named there (and on the key that encrypts it), or the
delivery fails at run time with an error only the sender's history shows: AWS Knowledge Center, "Why didn't I
receive an SNS notification for my CloudWatch alarm trigger?"; Amazon S3 User Guide, "Granting permissions to
publish event notification messages to a destination"; Amazon SQS Developer Guide, "Enable compatibility between
event sources from AWS services and encrypted queues"; CloudWatch Logs User Guide, "Encrypt log data in CloudWatch
Logs using AWS KMS"; CloudFront Developer Guide, "Configure standard logging (legacy)" (ACLs must be enabled).
cfn-lint and cdk-nag check none of this. The deliveries are DERIVED from the template's own wiring, never listed:

    alarm actions                          → SNS topic   cloudwatch.amazonaws.com  sns:Publish     (the alarm)
    S3 event notifications                 → SQS / SNS / Lambda   s3.amazonaws.com                 (the bucket)
    SNS subscriptions                      → SQS / Lambda         sns.amazonaws.com                (the topic)
    EventBridge targets without a role     → Lambda / SQS / SNS   events.amazonaws.com             (the rule)
    API Gateway (v2) integrations          → Lambda               apigateway.amazonaws.com         (the route)
    S3 server access logging               → log bucket           logging.s3.amazonaws.com         (the bucket)
    CloudFront origin access control       → origin bucket        cloudfront.amazonaws.com         (distribution)
    SageMaker async notifications          → SNS topics           the model's execution role (IAM, same account)

and each of them into an SSE-KMS topic, queue or bucket again on the key (kms:GenerateDataKey / kms:Decrypt), plus
CloudWatch Logs on the key of every encrypted log group. Two rules have no policy to read: a CloudFront standard
(legacy) log bucket must have ACLs enabled, and a server-access-log bucket must not be SSE-KMS.

Policies are evaluated by tests/stacks/policy_evaluation.py on ARNs rendered from the template (names from
TopicName, AlarmName...).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tests.stacks.intrinsics import ACCOUNT, REGION
from tests.stacks.policy_evaluation import (
    SNS_DEFAULT_POLICY,
    Delivery,
    TemplateView,
    decision,
    listed,
)

# --- what the template wires -------------------------------------------------------------------------------------

TOPIC, QUEUE, BUCKET, FUNCTION, KEY = (
    "AWS::SNS::Topic",
    "AWS::SQS::Queue",
    "AWS::S3::Bucket",
    "AWS::Lambda::Function",
    "AWS::KMS::Key",
)
_RECEIVER_ACTIONS = {TOPIC: "sns:Publish", QUEUE: "sqs:SendMessage", FUNCTION: "lambda:InvokeFunction"}


def _branches(value: Any) -> list[Any]:
    """A property's possible values: both sides of an Fn::If, without AWS::NoValue."""
    if isinstance(value, Mapping) and set(value) == {"Fn::If"}:
        return [v for branch in value["Fn::If"][1:] for v in _branches(branch)]
    return [] if value == {"Ref": "AWS::NoValue"} or value is None else [value]


def _into(
    view: TemplateView, sender: str, target: Any, source_arn: str | None, wired_by: str
) -> Iterator[Delivery]:
    """A delivery into whichever topic, queue or function of the template `target` names."""
    for type_name, action in _RECEIVER_ACTIONS.items():
        receiver = view.logical_id_of(target, type_name)
        if receiver is not None:
            yield Delivery(sender, (action,), receiver, view.arn(receiver), source_arn, wired_by)


def _alarm_actions(view: TemplateView) -> Iterator[Delivery]:
    for alarm, properties in view.of_type("AWS::CloudWatch::Alarm"):
        for field_name in ("AlarmActions", "OKActions", "InsufficientDataActions"):
            for action in properties.get(field_name, []):
                yield from _into(view, "cloudwatch.amazonaws.com", action, view.arn(alarm), alarm)


def _bucket_notifications(view: TemplateView) -> Iterator[Delivery]:
    configured = [
        (wired_by, properties["BucketName"], properties.get("NotificationConfiguration", {}))
        for wired_by, properties in view.of_type("Custom::S3BucketNotifications")
    ] + [
        (bucket, {"Ref": bucket}, properties["NotificationConfiguration"])
        for bucket, properties in view.of_type(BUCKET)
        if "NotificationConfiguration" in properties
    ]
    for wired_by, bucket_ref, configuration in configured:
        bucket = view.logical_id_of(bucket_ref, BUCKET)
        source = view.arn(bucket) if bucket else f"arn:aws:s3:::{view.resolve(bucket_ref)}"
        for kind, keys in (
            ("QueueConfigurations", ("QueueArn", "Queue")),
            ("TopicConfigurations", ("TopicArn", "Topic")),
            ("LambdaFunctionConfigurations", ("LambdaFunctionArn", "Function")),
        ):
            for item in configuration.get(kind, []):
                target = next(item[k] for k in keys if k in item)
                yield from _into(view, "s3.amazonaws.com", target, source, wired_by)


def _subscriptions(view: TemplateView) -> Iterator[Delivery]:
    for subscription, properties in view.of_type("AWS::SNS::Subscription"):
        if properties["Protocol"] in ("sqs", "lambda"):
            topic = str(view.resolve(properties["TopicArn"]))
            yield from _into(view, "sns.amazonaws.com", properties["Endpoint"], topic, subscription)


def _rule_targets(view: TemplateView) -> Iterator[Delivery]:
    for rule, properties in view.of_type("AWS::Events::Rule"):
        for target in properties.get("Targets", []):
            if "RoleArn" not in target:  # with a role EventBridge calls as that role: identity-based
                yield from _into(view, "events.amazonaws.com", target["Arn"], view.arn(rule), rule)


def _api_integrations(view: TemplateView) -> Iterator[Delivery]:
    integrations = dict(view.of_type("AWS::ApiGatewayV2::Integration"))
    for route, properties in view.of_type("AWS::ApiGatewayV2::Route"):
        target = str(view.resolve(properties.get("Target", ""))).removeprefix("integrations/")
        integration = next((i for i in integrations if view.resolve({"Ref": i}) == target), None)
        if integration is None:
            continue
        api = view.resolve(properties["ApiId"])
        method, path = str(properties["RouteKey"]).split(" ", 1)
        for _, stage in view.of_type("AWS::ApiGatewayV2::Stage"):
            if view.resolve(stage["ApiId"]) == api:
                source = f"arn:aws:execute-api:{view.region}:{ACCOUNT}:{api}/{stage['StageName']}/{method}{path}"
                yield from _into(
                    view, "apigateway.amazonaws.com", integrations[integration]["IntegrationUri"], source, route
                )


def _access_logging(view: TemplateView) -> Iterator[Delivery]:
    for bucket, properties in view.of_type(BUCKET):
        logging = properties.get("LoggingConfiguration", {})
        target = view.logical_id_of(logging["DestinationBucketName"], BUCKET) if logging else None
        if target is not None:
            key = f"{logging.get('LogFilePrefix', '')}2026-01-01-00-00-00-0123456789ABCDEF"
            yield Delivery(
                "logging.s3.amazonaws.com",
                ("s3:PutObject",),
                target,
                f"{view.arn(target)}/{key}",
                view.arn(bucket),
                bucket,
            )


def bucket_by_domain(view: TemplateView, domain: Any) -> str | None:
    rendered = view.resolve(domain)
    for bucket, _ in view.of_type(BUCKET):
        name = view.name(bucket)
        if rendered in (f"{name}.s3.{view.region}.amazonaws.com", f"{name}.s3.amazonaws.com"):
            return bucket
    return None


def _origin_access(view: TemplateView) -> Iterator[Delivery]:
    for distribution, properties in view.of_type("AWS::CloudFront::Distribution"):
        for origin in properties["DistributionConfig"].get("Origins", []):
            bucket = bucket_by_domain(view, origin["DomainName"]) if "OriginAccessControlId" in origin else None
            if bucket is not None:
                yield Delivery(
                    "cloudfront.amazonaws.com",
                    ("s3:GetObject",),
                    bucket,
                    f"{view.arn(bucket)}/index.html",
                    view.arn(distribution),
                    distribution,
                )


def _async_notifications(view: TemplateView) -> Iterator[Delivery]:
    models = dict(view.of_type("AWS::SageMaker::Model"))
    for config, properties in view.of_type("AWS::SageMaker::EndpointConfig"):
        notification = properties.get("AsyncInferenceConfig", {}).get("OutputConfig", {}).get("NotificationConfig")
        if not notification:
            continue
        names = {view.resolve(variant["ModelName"]) for variant in properties["ProductionVariants"]}
        roles = {
            view.logical_id_of(model["ExecutionRoleArn"], "AWS::IAM::Role")
            for model_id, model in models.items()
            if view.name(model_id) in names
        }
        for topic in (notification.get("SuccessTopic"), notification.get("ErrorTopic")):
            for role in roles:
                yield from _into(view, f"role:{role}", topic, None, config) if topic else ()


def _log_group_keys(view: TemplateView) -> Iterator[Delivery]:
    for log_group, _ in view.of_type("AWS::Logs::LogGroup"):
        key = view.kms_key_of(log_group)
        if key is not None:
            context = {"kms:EncryptionContext:aws:logs:arn": view.arn(log_group).removesuffix(":*")}
            actions = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")
            yield Delivery(
                f"logs.{view.region}.amazonaws.com", actions, key, view.arn(key), None, log_group, context
            )


def deliveries(view: TemplateView) -> list[Delivery]:
    """Every delivery the template wires, then the same senders on the keys of the encrypted receivers."""
    found: list[Delivery] = []
    for derive in (
        _alarm_actions,
        _bucket_notifications,
        _subscriptions,
        _rule_targets,
        _api_integrations,
        _access_logging,
        _origin_access,
        _async_notifications,
    ):
        found += derive(view)
    for delivery in list(found):
        key = (
            view.kms_key_of(delivery.receiver)
            if view.type_of(delivery.receiver) in (TOPIC, QUEUE, BUCKET)
            else None
        )
        if key is not None:
            reads = delivery.actions == ("s3:GetObject",)
            actions = ("kms:Decrypt",) if reads else ("kms:GenerateDataKey", "kms:Decrypt")
            found.append(
                Delivery(delivery.sender, actions, key, view.arn(key), delivery.source_arn, delivery.wired_by)
            )
    unique = {(d.receiver, d.describe()): d for d in found + list(_log_group_keys(view))}
    return list(unique.values())


# --- the check ---------------------------------------------------------------------------------------------------

_POLICY_TYPES = {
    TOPIC: ("AWS::SNS::TopicPolicy", "Topics", "PolicyDocument"),
    QUEUE: ("AWS::SQS::QueuePolicy", "Queues", "PolicyDocument"),
    BUCKET: ("AWS::S3::BucketPolicy", "Bucket", "PolicyDocument"),
}


def resource_policy(view: TemplateView, receiver: str) -> list[dict[str, Any]]:
    """The statements of the policy attached to `receiver` (the service default when it has none)."""
    type_name = view.type_of(receiver)
    if type_name == KEY:
        return view.resolve(view.resources[receiver]["Properties"]["KeyPolicy"]["Statement"])
    if type_name == FUNCTION:
        return [
            _permission_statement(view, permission)
            for _, permission in view.of_type("AWS::Lambda::Permission")
            if view.logical_id_of(permission["FunctionName"], FUNCTION) == receiver
        ]
    policy_type, targets, document = _POLICY_TYPES[type_name or ""]
    statements = [
        statement
        for _, policy in view.of_type(policy_type)
        if receiver in {view.logical_id_of(t, type_name or "") for t in listed(policy[targets])}
        for statement in view.resolve(policy[document]["Statement"])
    ]
    return statements or (SNS_DEFAULT_POLICY if type_name == TOPIC else [])


def _permission_statement(view: TemplateView, permission: Mapping[str, Any]) -> dict[str, Any]:
    """AWS::Lambda::Permission as the statement Lambda adds to the function's policy (AddPermission)."""
    principal = view.resolve(permission["Principal"])
    conditions: dict[str, dict[str, str]] = {}
    if "SourceArn" in permission:
        conditions["ArnLike"] = {"AWS:SourceArn": view.resolve(permission["SourceArn"])}
    if "SourceAccount" in permission:
        conditions["StringEquals"] = {"AWS:SourceAccount": view.resolve(permission["SourceAccount"])}
    return {
        "Effect": "Allow",
        "Principal": {"Service": principal} if principal.endswith(".amazonaws.com") else {"AWS": principal},
        "Action": view.resolve(permission["Action"]),
        "Resource": view.resolve(permission["FunctionName"]),
        "Condition": conditions,
    }


def identity_policy(view: TemplateView, role: str) -> list[dict[str, Any]]:
    """Every statement the template grants `role` (its inline policies and the AWS::IAM::Policy resources)."""
    statements = [
        statement
        for _, policy in view.of_type("AWS::IAM::Policy")
        if role in {view.logical_id_of(r, "AWS::IAM::Role") for r in policy.get("Roles", [])}
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    for inline in view.resources[role]["Properties"].get("Policies", []):
        statements += inline["PolicyDocument"]["Statement"]
    return view.resolve(statements)


def allowed(view: TemplateView, delivery: Delivery, action: str) -> bool:
    """Whether AWS would let the sender make this call: its resource policy (and, for a role, its identity)."""
    statements = resource_policy(view, delivery.receiver)
    resource = delivery.resource if view.type_of(delivery.receiver) != FUNCTION else view.arn(delivery.receiver)
    context = {"aws:securetransport": "true", **{k.lower(): v for k, v in delivery.context.items()}}
    if delivery.sender.startswith("role:"):
        role = delivery.sender.removeprefix("role:")
        verdict = decision(statements, delivery.sender, action, resource, context)
        identity = decision(identity_policy(view, role), delivery.sender, action, resource, context)
        # Same account: the identity policy suffices, except on a key whose policy must delegate to the account.
        delegated = verdict == "allow" or view.type_of(delivery.receiver) != KEY
        return verdict != "deny" and identity == "allow" and delegated
    context |= {"aws:sourceaccount": ACCOUNT, "aws:sourceowner": ACCOUNT}
    if delivery.source_arn is not None:
        context["aws:sourcearn"] = delivery.source_arn
    return decision(statements, delivery.sender, action, resource, context) == "allow"


def _rule_problems(view: TemplateView) -> Iterator[str]:
    """What no policy expresses: alarm names, the ACLs of a CloudFront log bucket, SSE-S3 server access logs."""
    for alarm, properties in view.of_type("AWS::CloudWatch::Alarm"):
        notifies = any(d.wired_by == alarm for d in _alarm_actions(view))
        if notifies and "AlarmName" not in properties:
            yield (
                f"{alarm} notifies a topic of this stack without an AlarmName: its ARN, which the topic "
                "policy must admit, is made up at deploy time"
            )
    for distribution, properties in view.of_type("AWS::CloudFront::Distribution"):
        for logging in _branches(properties["DistributionConfig"].get("Logging")):
            bucket = bucket_by_domain(view, logging["Bucket"])
            rules = (
                view.resources[bucket]["Properties"].get("OwnershipControls", {}).get("Rules", [])
                if bucket
                else []
            )
            if bucket is None or any(r.get("ObjectOwnership") == "BucketOwnerEnforced" for r in rules):
                yield (
                    f"{distribution} writes standard (legacy) logs to {bucket or logging['Bucket']}, whose ACLs "
                    "are disabled (BucketOwnerEnforced): CloudFront cannot deliver them"
                )
    for delivery in _access_logging(view):
        if view.kms_key_of(delivery.receiver) is not None:
            yield (
                f"{delivery.wired_by} logs to {delivery.receiver}, an SSE-KMS bucket: S3 server access logs need "
                "SSE-S3"
            )


def problems(template: dict[str, Any], region: str = REGION) -> list[str]:
    """One line per delivery the receiving policy refuses, and per broken rule; empty when complete. `region`: a
    pinned stack's region (its ARNs carry it literally)."""
    view = TemplateView(template, region)
    found = [
        f"{delivery.receiver} ({view.type_of(delivery.receiver)}) refuses {delivery.describe()}: {action}"
        for delivery in deliveries(view)
        for action in delivery.actions
        if not allowed(view, delivery, action)
    ]
    return found + list(_rule_problems(view))
