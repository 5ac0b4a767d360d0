"""Parts of the review capability that are not resources of its construct (stacks/review.py): the config
section, the Lambda bundle, the optional WAF web ACL and the dashboard widgets the monitoring construct can add."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from aws_cdk import AssetHashType, BundlingOptions, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks import constants
from stacks.config import ReviewPageConfig
from stacks.lambda_bundling import PipLocalBundling

REVIEW_API_DIR = constants.PROJECT_ROOT / "review_api"
REVIEW_SERVICE_NAME = "photo-review"  # the EMF dimension `service` of the review API's metrics
RUNTIME = lambda_.Runtime.PYTHON_3_12
assert RUNTIME.name == f"python{constants.LAMBDA_PYTHON_VERSION}", "runtime and bundled wheels disagree"
WAF_RATE_LIMIT_PER_5_MIN = 2000  # per client IP; a reviewer's page makes a few requests per photo


def review_source_files(taxonomy_file: Path) -> list[tuple[Path, str]]:
    """(file, path in the bundle): review_api/ as a package, classification/, and the configured taxonomy."""
    # local.py is the development server (review_api/local.py), never used in Lambda.
    sources = [
        (path, f"review_api/{path.name}")
        for path in sorted(REVIEW_API_DIR.glob("*.py"))
        if path.name != "local.py"
    ]
    sources += [
        (path, path.relative_to(constants.PROJECT_ROOT).as_posix())
        for path in sorted(constants.CLASSIFICATION_DIR.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]
    taxonomy_target = taxonomy_file.resolve().relative_to(constants.PROJECT_ROOT).as_posix()
    if taxonomy_target not in {target for _, target in sources}:
        sources.append((taxonomy_file, taxonomy_target))
    return sources


def review_function_code(taxonomy_file: Path) -> lambda_.Code:
    """The review API's code asset with review_api/requirements.txt, bundled locally like the labeller's."""
    sources = review_source_files(taxonomy_file)
    bundler = PipLocalBundling(requirements_file=REVIEW_API_DIR / "requirements.txt", source_files=sources)
    # The asset hash is the inputs' (pinned requirements + sources + pip flags), as for the labeller.
    digest = hashlib.sha256(" ".join(bundler.pip_command("<out>")[1:]).encode())
    for source, target in [(bundler.requirements_file, "requirements.txt"), *sources]:
        digest.update(target.encode() + b"\0" + source.read_bytes() + b"\0")
    return lambda_.Code.from_asset(
        str(REVIEW_API_DIR),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=digest.hexdigest(),
        bundling=BundlingOptions(image=RUNTIME.bundling_image, local=bundler),
    )


def review_web_acl(scope: Construct, name_prefix: str) -> wafv2.CfnWebACL:
    """A CLOUDFRONT-scope web ACL: AWS IP-reputation, common and known-bad-input rules, a per-IP rate limit."""

    def managed(name: str, priority: int) -> wafv2.CfnWebACL.RuleProperty:
        return wafv2.CfnWebACL.RuleProperty(
            name=name,
            priority=priority,
            override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                    vendor_name="AWS", name=name
                )
            ),
            visibility_config=_visibility(name),
        )

    rate_limit = wafv2.CfnWebACL.RuleProperty(
        name="RateLimitPerIp",
        priority=10,
        action=wafv2.CfnWebACL.RuleActionProperty(block={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                limit=WAF_RATE_LIMIT_PER_5_MIN, aggregate_key_type="IP"
            )
        ),
        visibility_config=_visibility("RateLimitPerIp"),
    )
    return wafv2.CfnWebACL(
        scope,
        "WebAcl",
        name=f"{name_prefix}-review",
        scope="CLOUDFRONT",
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        rules=[
            managed("AWSManagedRulesAmazonIpReputationList", 1),
            managed("AWSManagedRulesCommonRuleSet", 2),
            managed("AWSManagedRulesKnownBadInputsRuleSet", 3),
            rate_limit,
        ],
        visibility_config=_visibility(f"{name_prefix}-review"),
    )


def plain_sub(node: Any) -> Any:
    """`{"Fn::Sub": "a-${AWS::Region}"}` as cdk-nag spells it in a finding id (`a-<AWS::Region>`)."""
    if isinstance(node, dict) and set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
        return re.sub(r"\$\{([^}]+)\}", r"<\1>", node["Fn::Sub"])
    if isinstance(node, dict):
        return {key: plain_sub(value) for key, value in node.items()}
    if isinstance(node, list):
        return [plain_sub(value) for value in node]
    return node


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )


def review_dashboard_widgets(
    metrics_namespace: str, *, service: str = REVIEW_SERVICE_NAME
) -> list[cloudwatch.IWidget]:
    """Widgets for the operations dashboard (stacks/monitoring.py): the review backlog and decisions per hour.

    Metrics (EMF from the review API's Lambda, namespace `metrics_namespace`, dimension service=photo-review):
    ReviewBacklog (Count, every backlog_probe_minutes), ReviewDecisionsByKind (Count, dimension `decision`),
    ReviewConflicts (Count).
    """
    dimensions = {"service": service}
    backlog = cloudwatch.Metric(
        namespace=metrics_namespace,
        metric_name="ReviewBacklog",
        dimensions_map=dimensions,
        statistic=cloudwatch.Stats.MAXIMUM,
        period=Duration.minutes(15),
        label="photos waiting (NEEDS_REVIEW)",
    )
    decisions = [
        cloudwatch.Metric(
            namespace=metrics_namespace,
            metric_name="ReviewDecisionsByKind",
            dimensions_map={**dimensions, "decision": decision},
            statistic=cloudwatch.Stats.SUM,
            period=Duration.hours(1),
            label=decision,
        )
        for decision in ("confirm", "correct", "reject")
    ]
    conflicts = cloudwatch.Metric(
        namespace=metrics_namespace,
        metric_name="ReviewConflicts",
        dimensions_map=dimensions,
        statistic=cloudwatch.Stats.SUM,
        period=Duration.hours(1),
        label="conflicts (stale decisions refused)",
    )
    return [
        cloudwatch.GraphWidget(title="Review backlog", left=[backlog], width=12),
        cloudwatch.GraphWidget(
            title="Review decisions per hour", left=decisions, right=[conflicts], stacked=True, width=12
        ),
    ]


__all__ = [
    "REVIEW_SERVICE_NAME",
    "ReviewPageConfig",
    "plain_sub",
    "review_dashboard_widgets",
    "review_function_code",
    "review_source_files",
    "review_web_acl",
]
