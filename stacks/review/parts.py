"""Parts of the review capability that are not resources of its construct (stacks/review/page.py): the config
section, the Lambda bundle, the log group names, the optional WAF web ACL and the dashboard widgets the monitoring
construct can add."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aws_cdk import AssetHashType, BundlingOptions, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks.common import constants
from stacks.common.lambda_bundling import RUNTIME, PipLocalBundling, inputs_hash
from stacks.config import ReviewPageConfig

REVIEW_API_DIR = constants.PROJECT_ROOT / "review_api"
REVIEW_SERVICE_NAME = "photo-review"  # the EMF dimension `service` of the review API's metrics
WAF_RATE_LIMIT_PER_5_MIN = 2000  # per client IP; a reviewer's page makes a few requests per photo


def review_log_group_name(name_prefix: str, what: str) -> str:
    """A literal name: the data key's policy names the log group it may encrypt
    (stacks/common/encrypted_logs.py)."""
    return f"/{name_prefix}/review/{what}"


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
    return lambda_.Code.from_asset(
        str(REVIEW_API_DIR),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=inputs_hash(bundler),  # as for the labeller
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


REVIEW_DECISIONS = ("confirm", "correct", "reject")  # the `decision` dimension of ReviewDecisionsByKind


def review_dashboard_widgets(
    metrics_namespace: str,
    *,
    service: str = REVIEW_SERVICE_NAME,
    backlog_probe_minutes: int = 15,
    width: int = 24,
) -> list[cloudwatch.IWidget]:
    """Widgets the monitoring construct adds to the operations dashboard when the review page is deployed.

    They graph the EMF metrics of the review API's Lambda (review_api/handler.py), namespace `metrics_namespace`,
    dimension service=photo-review: ReviewBacklog (Count, emitted every `backlog_probe_minutes` by the scheduled
    probe), ReviewDecisionsByKind (Count, extra dimension `decision`), ReviewDecisions (Count, all kinds),
    ReviewConflicts, ReviewOverrides and ReviewUndos (Count). Agreement follows tools/review_report.py: a
    correction and a rejection both disagree with the model. An undone decision stays counted (undos are graphed
    beside the decisions); `python -m tools.review_report` reads the table itself and is the exact figure.
    """
    dimensions = {"service": service}
    column = width // 3

    def count(name: str, period: Duration, label: str, **extra: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=metrics_namespace,
            metric_name=name,
            dimensions_map={**dimensions, **extra},
            statistic=cloudwatch.Stats.SUM,
            period=period,
            label=label,
        )

    # The probe's own period: a shorter one would graph gaps between its data points.
    backlog = cloudwatch.Metric(
        namespace=metrics_namespace,
        metric_name="ReviewBacklog",
        dimensions_map=dimensions,
        statistic=cloudwatch.Stats.MAXIMUM,
        period=Duration.minutes(backlog_probe_minutes),
        label="photos waiting (NEEDS_REVIEW)",
    )
    hour, day = Duration.hours(1), Duration.days(1)
    per_hour = [count("ReviewDecisionsByKind", hour, kind, decision=kind) for kind in REVIEW_DECISIONS]
    by_kind = {kind: count("ReviewDecisionsByKind", day, kind, decision=kind) for kind in REVIEW_DECISIONS}
    total = " + ".join(f"FILL({kind}, 0)" for kind in by_kind)

    def share(kind: str, label: str) -> cloudwatch.MathExpression:
        # IF without an else: a day without decisions has no point rather than a division by zero.
        return cloudwatch.MathExpression(
            expression=f"IF(({total}) > 0, 100 * FILL({kind}, 0) / ({total}))",
            using_metrics=dict(by_kind),
            period=day,
            label=label,
        )

    return [
        cloudwatch.GraphWidget(
            title="Review backlog (photos waiting for a reviewer)",
            left=[backlog],
            left_y_axis=cloudwatch.YAxisProps(min=0, label="photos", show_units=False),
            width=column,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Review decisions per hour",
            left=per_hour,
            right=[
                count("ReviewConflicts", hour, "conflicts (stale decisions refused)"),
                count("ReviewOverrides", hour, "overrides by leads"),
                count("ReviewUndos", hour, "undone"),
            ],
            stacked=True,
            width=column,
            height=6,
        ),
        cloudwatch.GraphWidget(
            title="Reviewer agreement with the model per day (%)",
            left=[
                share("confirm", "agreement (confirmed)"),
                share("correct", "corrected"),
                share("reject", "rejected"),
            ],
            right=[count("ReviewDecisions", day, "decisions per day")],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=100, label="% of decisions", show_units=False),
            right_y_axis=cloudwatch.YAxisProps(min=0, label="decisions", show_units=False),
            width=width - 2 * column,
            height=6,
        ),
    ]


__all__ = [
    "REVIEW_DECISIONS",
    "REVIEW_SERVICE_NAME",
    "ReviewPageConfig",
    "plain_sub",
    "review_dashboard_widgets",
    "review_function_code",
    "review_source_files",
    "review_web_acl",
]
