"""The review construct, built in a small stack of its own (Storage + ReviewPage): security, least privilege,
sign-in, nag, and the Lambda bundle's layout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from stacks.common import constants, nag
from stacks.config import AppConfig, ConfigError, ReviewPageConfig, StorageConfig
from stacks.review.page import ReviewPage
from stacks.review.parts import review_dashboard_widgets, review_source_files
from stacks.storage.photo_store import Storage
from tests.stacks.conftest import cdk_json_context

TAXONOMY = constants.PROJECT_ROOT / "classification" / "taxonomy.json"
DOMAIN = "review.example.com"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-1111-2222-333344445555"


def build(region: str | None = None, **settings: Any) -> tuple[cdk.Stack, ReviewPage, Storage]:
    feature_flags = {k: v for k, v in cdk_json_context().items() if k.startswith("@")}
    app = cdk.App(context={**feature_flags, "aws:cdk:bundling-stacks": []})
    env = cdk.Environment(account="123456789012", region=region) if region else None
    stack = cdk.Stack(app, "ReviewTest", env=env)
    storage = Storage(stack, "Storage", name_prefix="t", config=StorageConfig(access_log_retention_days=30))
    review = ReviewPage(
        stack,
        "Review",
        name_prefix="t",
        photo_bucket=storage.bucket,
        table=storage.table,
        data_key=storage.key,
        access_log_bucket=storage.access_log_bucket,
        upload_prefix="uploads/",
        taxonomy_file=TAXONOMY,
        metrics_namespace="HotelPhotos",
        config=ReviewPageConfig(**settings),
    )
    return stack, review, storage


@pytest.fixture(scope="module")
def default() -> tuple[cdk.Stack, ReviewPage, Template]:
    stack, review, _ = build()
    return stack, review, Template.from_stack(stack)


def _statements(template: Template, role_logical_id_part: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    found = [
        statement
        for policy in policies.values()
        if any(role_logical_id_part in role["Ref"] for role in policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert found, f"no policy for a role named like {role_logical_id_part}"
    return found


def test_the_api_role_may_query_the_status_index_update_labels_and_read_uploads_nothing_else(default: Any) -> None:
    stack, _, template = default
    statements = _statements(template, "ReviewFunctionRole")
    by_action: dict[str, list[Any]] = {}
    for statement in statements:
        for action in [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]:
            by_action.setdefault(action, []).append(statement["Resource"])
    assert sorted(by_action) == sorted(
        [
            "dynamodb:Query",
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
            "dynamodb:PutItem",
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:ListBucket",
            "kms:Decrypt",
            "kms:Encrypt",
            "kms:GenerateDataKey",
            "kms:DescribeKey",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
        ]
    )
    rendered = {action: json.dumps(stack.resolve(resource)) for action, resource in by_action.items()}
    assert "/index/by-status" in rendered["dynamodb:Query"] and "ReviewHistoryTable" in rendered["dynamodb:Query"]
    # The history only grows: entries are added and read, never updated or deleted
    assert "ReviewHistoryTable" in rendered["dynamodb:PutItem"] and "Labels" not in rendered["dynamodb:PutItem"]
    assert "ReviewHistoryTable" not in rendered["dynamodb:UpdateItem"] + rendered["dynamodb:GetItem"]
    assert (
        "index" not in rendered["dynamodb:UpdateItem"] and "StorageLabelsTable" in rendered["dynamodb:UpdateItem"]
    )
    assert "/uploads/*" in rendered["s3:GetObject"] and "StorageImageBucket" in rendered["s3:GetObject"]
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["uploads/*"]}}


def test_only_administrators_create_reviewers_who_sign_in_with_mfa(default: Any) -> None:
    _, _, template = default
    template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
            "MfaConfiguration": "ON",
            "EnabledMfas": ["SOFTWARE_TOKEN_MFA"],
            "Policies": {"PasswordPolicy": Match.object_like({"MinimumLength": 12, "RequireSymbols": True})},
        },
    )
    # A public client (no secret) with the code flow only, returning to the page's own URL
    template.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {
            "GenerateSecret": False,
            "AllowedOAuthFlows": ["code"],
            "AllowedOAuthFlowsUserPoolClient": True,
            "CallbackURLs": [
                {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [Match.any_value(), "DomainName"]}, "/"]]}
            ],
        },
    )


def test_every_api_route_needs_the_jwt_authorizer_of_the_user_pool(default: Any) -> None:
    _, _, template = default
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Authorizer",
        {
            "AuthorizerType": "JWT",
            "IdentitySource": ["$request.header.Authorization"],
            "JwtConfiguration": Match.object_like({"Audience": [{"Ref": Match.string_like_regexp("PageClient")}]}),
        },
    )
    routes = template.find_resources("AWS::ApiGatewayV2::Route")
    assert len(routes) == 2
    assert all(route["Properties"]["AuthorizationType"] == "JWT" for route in routes.values())
    # Browsers call it from the page's origin only
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Api",
        {
            "CorsConfiguration": Match.object_like(
                {"AllowOrigins": [Match.object_like({"Fn::Join": Match.any_value()})]}
            )
        },
    )
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {"AccessLogSettings": Match.object_like({"Format": Match.string_like_regexp("authorizer.claims.sub")})},
    )


def test_the_page_is_a_private_bucket_behind_cloudfront_with_oac_and_security_headers(default: Any) -> None:
    _, _, template = default
    template.has_resource_properties(
        "AWS::CloudFront::OriginAccessControl",
        {
            "OriginAccessControlConfig": Match.object_like(
                {"SigningBehavior": "always", "OriginAccessControlOriginType": "s3"}
            )
        },
    )
    template.has_resource_properties(
        "AWS::CloudFront::Distribution",
        {
            "DistributionConfig": Match.object_like(
                {
                    "DefaultRootObject": "index.html",
                    "DefaultCacheBehavior": Match.object_like({"ViewerProtocolPolicy": "redirect-to-https"}),
                }
            )
        },
    )
    headers = template.find_resources("AWS::CloudFront::ResponseHeadersPolicy")
    (policy,) = headers.values()
    security = policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    csp = json.dumps(security["ContentSecurityPolicy"]["ContentSecurityPolicy"])
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert security["FrameOptions"]["FrameOption"] == "DENY"
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": "review-site/"},
        },
    )
    # The deployed page is the repository's review_web/ plus config.json naming the API and the sign-in
    template.has_resource_properties("Custom::CDKBucketDeployment", {"DistributionPaths": ["/*"]})


def test_the_backlog_probe_invokes_the_api_function_on_a_schedule(default: Any) -> None:
    _, _, template = default
    template.has_resource_properties(
        "AWS::Events::Rule",
        {"ScheduleExpression": "rate(15 minutes)", "Targets": [Match.object_like({"Arn": Match.any_value()})]},
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "review_api.handler.lambda_handler",
            "Runtime": "python3.12",
            "TracingConfig": {"Mode": "Active"},
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "UPLOAD_PREFIX": "uploads/",
                        "POWERTOOLS_SERVICE_NAME": "photo-review",
                        "PRESIGNED_URL_SECONDS": "300",
                    }
                )
            },
        },
    )


class _Recorded:
    """Stands in for aws_cdk.Validations in stacks/common/nag.py: records acknowledgements
    instead of applying them."""

    made: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, scope: IConstruct) -> None:
        self._path = scope.node.path

    @classmethod
    def of(cls, scope: IConstruct) -> _Recorded:
        return cls(scope)

    def acknowledge(self, acknowledgment: cdk.Acknowledgment) -> None:
        self.made.append((self._path, acknowledgment.id))


VARIANTS: dict[str, Callable[[], tuple[cdk.Stack, ReviewPage, Storage]]] = {
    "default": lambda: build(),
    "pinned_region": lambda: build("ap-east-1"),
    "waf": lambda: build("us-east-1", waf=True),
    "web_acl_arn": lambda: build(web_acl_arn="arn:aws:wafv2:us-east-1:123456789012:global/webacl/x/1"),
    "custom_domain": lambda: build(domain_name=DOMAIN, certificate_arn=CERTIFICATE),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cdk_nag_finds_nothing_and_every_acknowledgement_hides_a_real_finding(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the stack built once as is, and once with every acknowledgement recorded instead of applied
    stack, _, _ = VARIANTS[variant]()
    assert [v.rule_name for v in AwsSolutionsChecks().validate_scope(stack).violations] == []
    monkeypatch.setattr(nag, "Validations", _Recorded)
    monkeypatch.setattr(_Recorded, "made", [])
    bare, _, _ = VARIANTS[variant]()
    findings = [
        (violation.rule_name, resource.construct_path)
        for violation in AwsSolutionsChecks().validate_scope(bare).violations
        for resource in violation.violating_resources
    ]
    # Then each acknowledgement matches a finding on its construct or below, and each finding is acknowledged
    dead = [
        (path, rule)
        for path, rule in _Recorded.made
        if not any(found == rule and (where == path or where.startswith(f"{path}/")) for found, where in findings)
    ]
    assert dead == []
    assert len(findings) >= len(_Recorded.made)


def test_waf_attaches_a_cloudfront_web_acl_and_is_refused_outside_us_east_1() -> None:
    stack, review, _ = build("us-east-1", waf=True)
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::WAFv2::WebACL", {"Scope": "CLOUDFRONT", "DefaultAction": {"Allow": {}}})
    template.has_resource_properties(
        "AWS::CloudFront::Distribution",
        {"DistributionConfig": Match.object_like({"WebACLId": {"Fn::GetAtt": [Match.any_value(), "Arn"]}})},
    )
    assert review.web_acl is not None
    with pytest.raises(ConfigError, match=r"review.waf.*us-east-1"):
        build("eu-west-1", waf=True)
    with pytest.raises(ConfigError, match=r"review.waf.*an unpinned region"):
        build(waf=True)
    # no WAF by default
    assert Template.from_stack(build()[0]).find_resources("AWS::WAFv2::WebACL") == {}


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"waf": True, "web_acl_arn": "arn:aws:wafv2:us-east-1:1:global/webacl/x/1"}, "review.waf"),
        ({"web_acl_arn": "arn:aws:wafv2:eu-west-1:1:regional/webacl/x/1"}, "review.web_acl_arn"),
        ({"presigned_url_seconds": 5}, "review.presigned_url_seconds"),
        ({"domain_name": "review.example.com"}, "review.certificate_arn"),
        ({"certificate_arn": CERTIFICATE}, "review.domain_name"),
        ({"domain_name": "Review_Page", "certificate_arn": CERTIFICATE}, "review.domain_name"),
        (
            {
                "domain_name": "review.example.com",
                "certificate_arn": CERTIFICATE.replace("us-east-1", "eu-west-1"),
            },
            "review.certificate_arn",
        ),
        ({"backlog_probe_minutes": 0}, "review.backlog_probe_minutes"),
        ({"lease_seconds": 10}, "review.lease_seconds"),
    ],
)
def test_config_names_the_wrong_key(values: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        AppConfig.from_context({"review": values})
    # The full dotted key once (the section's own errors name only their field)
    assert str(raised.value).startswith(f"photo_labeler.{key}: "), str(raised.value)
    assert ReviewPageConfig().enabled is True


def test_dashboard_widgets_show_the_backlog_and_decisions_per_hour() -> None:
    stack = cdk.Stack(cdk.App(), "Widgets")
    widgets = review_dashboard_widgets("HotelPhotos")
    body = json.dumps([stack.resolve(widget.to_json()) for widget in widgets])
    assert "ReviewBacklog" in body and "ReviewDecisionsByKind" in body and '"photo-review"' in body
    assert "Review decisions per hour" in body and "3600" in body and "ReviewOverrides" in body


def test_the_bundle_layout_imports_the_handler_with_the_configured_taxonomy(tmp_path: Path) -> None:
    # Given the bundle's sources copied as the bundler lays them out (dependencies come from this venv)
    for source, target in review_source_files(TAXONOMY):
        destination = tmp_path / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    # When Python imports the handler from the bundle root, as Lambda does, and builds its service
    code = (
        "import os; os.environ.update(TABLE_NAME='t', HISTORY_TABLE_NAME='h', BUCKET_NAME='b',"
        " AWS_DEFAULT_REGION='us-east-1',"
        " TAXONOMY_FILE='classification/taxonomy.json', LAMBDA_TASK_ROOT=os.getcwd(),"
        " POWERTOOLS_METRICS_NAMESPACE='x');"
        "import review_api.handler as h; print(len(h.get_service().config.labels))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.'); {code}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    # Then it loads the bundled taxonomy (the project root is not on the path: -I)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(json.loads(TAXONOMY.read_text())["labels"]))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["waf", "custom_domain"])
def test_cfn_lint_reports_no_errors(variant: str, tmp_path: Path) -> None:
    from tests.stacks.test_security_gates import _cfn_lint

    stack, _, _ = VARIANTS[variant]()  # every resource of the default, plus the web ACL or the custom domain
    result = _cfn_lint(Template.from_stack(stack).to_json(), tmp_path)
    # Exit code bits: 2 = errors (4 = warnings: W3005, a DependsOn that CDK adds beside a GetAtt)
    assert result.returncode & ~(4 | 8) == 0, result.stdout + result.stderr


def test_one_config_switch_leaves_the_review_page_out_of_the_app() -> None:
    from tests.stacks.conftest import synth

    # Given the app as committed (on by default) and with review.enabled off
    on = synth()
    off = synth({"photo_labeler.review.enabled": "false"})
    # Then only the first has the page, its sign-in and its outputs
    assert on.stack.review is not None and len(on.resources("AWS::Cognito::UserPool")) == 1
    assert {"ReviewPageUrl", "ReviewUserPoolId", "ReviewHistoryTableName"} <= set(on.json["Outputs"])
    assert off.stack.review is None
    for type_name in (
        "AWS::Cognito::UserPool",
        "AWS::Cognito::UserPoolGroup",
        "AWS::CloudFront::Distribution",
        "AWS::ApiGatewayV2::Api",
    ):
        assert off.resources(type_name) == {}


# --- access logs and the custom domain (stacks/review/site.py) --------------------------------------------------


def _distribution(stack: cdk.Stack) -> dict[str, Any]:
    (found,) = Template.from_stack(stack).find_resources("AWS::CloudFront::Distribution").values()
    return found["Properties"]["DistributionConfig"]


def _access_log_bucket(stack: cdk.Stack) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r)
        for lid, r in Template.from_stack(stack).find_resources("AWS::S3::Bucket").items()
        if "AccessLog" in lid
    ]
    return found


def test_the_distribution_writes_standard_logs_into_the_access_log_bucket() -> None:
    # Given a stack pinned to a region whose buckets CloudFront's standard (legacy) logs reach
    stack, _, _ = build("us-east-1")
    bucket_id, bucket = _access_log_bucket(stack)
    # Then the distribution logs there, under its own prefix
    assert _distribution(stack)["Logging"] == {
        "Bucket": {"Fn::GetAtt": [bucket_id, "RegionalDomainName"]},
        "Prefix": "review-cdn/",
    }
    # And the bucket has ACLs enabled, which CloudFront needs to write them (CloudFront Developer Guide,
    # "Configure standard logging (legacy)": not a bucket with Object Ownership "bucket owner enforced"), while
    # every public access path stays blocked
    assert bucket["Properties"]["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]}
    assert set(bucket["Properties"]["PublicAccessBlockConfiguration"].values()) == {True}


def _condition_holds(condition: Any, region: str) -> bool:
    (function, arguments), *_ = condition.items()
    if function == "Fn::Or":
        return any(_condition_holds(argument, region) for argument in arguments)
    assert function == "Fn::Equals" and arguments[0] == {"Ref": "AWS::Region"}, condition
    return arguments[1] == region


@pytest.mark.parametrize(
    ("region", "delivered"),
    [
        ("us-east-1", True),
        ("eu-central-1", True),
        ("ap-southeast-2", True),
        ("ap-east-1", False),
        ("il-central-1", False),
    ],
)
def test_an_unpinned_stack_logs_only_where_cloudfront_can_deliver(region: str, delivered: bool) -> None:
    # Given the environment-agnostic template: the region is only known at deploy time
    stack, _, _ = build()
    logging = _distribution(stack)["Logging"]
    (condition_id, when_deliverable, otherwise) = logging["Fn::If"]
    condition = Template.from_stack(stack).to_json()["Conditions"][condition_id]
    # Then the logging is set exactly where the condition holds, and the deploy never names an unreachable bucket
    assert when_deliverable["Prefix"] == "review-cdn/" and otherwise == {"Ref": "AWS::NoValue"}
    assert _condition_holds(condition, region) is delivered


def test_a_stack_pinned_to_an_opt_in_region_serves_the_page_without_standard_logs() -> None:
    stack, _, _ = build("ap-east-1")
    assert "Logging" not in _distribution(stack)
    assert "Conditions" not in Template.from_stack(stack).to_json()


def test_a_custom_domain_is_served_with_its_certificate_and_tls_1_2_2021() -> None:
    # Given review.domain_name and its us-east-1 ACM certificate
    stack, review, _ = build(domain_name=DOMAIN, certificate_arn=CERTIFICATE)
    config = _distribution(stack)
    # Then CloudFront answers for the domain with that certificate and the TLSv1.2_2021 security policy, which the
    # default *.cloudfront.net certificate cannot carry (CloudFront Developer Guide, "Supported protocols and
    # ciphers between viewers and CloudFront": the default certificate always uses TLSv1)
    assert config["Aliases"] == [DOMAIN]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": CERTIFICATE,
        "MinimumProtocolVersion": "TLSv1.2_2021",
        "SslSupportMethod": "sni-only",
    }
    # And the page, its sign-in and its API's CORS all use the domain, not the distribution's own name
    assert review.url == f"https://{DOMAIN}/"
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {"CallbackURLs": [f"https://{DOMAIN}/"], "LogoutURLs": [f"https://{DOMAIN}/"]},
    )
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Api", {"CorsConfiguration": Match.object_like({"AllowOrigins": [f"https://{DOMAIN}"]})}
    )
