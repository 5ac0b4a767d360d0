"""The review page's hosting (stacks/review/page.py builds it into its construct): the private bucket, CloudFront
with the page's security headers, its access logs and optional custom domain, and the deployment that copies
review_web/ and config.json into the bucket.

Functions that add resources to the ReviewPage construct's scope, not constructs of their own, so every
resource keeps its construct id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Aws, CfnCondition, Duration, Fn, RemovalPolicy, Stack, Token
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from stacks.common import constants
from stacks.common.encrypted_logs import encrypted_log_group
from stacks.common.lambda_role import lambda_role
from stacks.common.nag import acknowledge, nag_resource
from stacks.review.parts import plain_sub, review_log_group_name

REVIEW_WEB_DIR = constants.PROJECT_ROOT / "review_web"
PAGE_DEPLOYMENT_MEMORY_MB = 256  # copies a few small files
CDN_LOG_PREFIX = "review-cdn/"  # the distribution's standard logs in the access-log bucket
# Standard logging (legacy) needs no us-east-1 stack (logging v2's delivery source must be created there) but does
# not deliver to buckets in opt-in regions (CloudFront Developer Guide, "Configure standard logging (legacy)":
# "Don't choose an Amazon S3 bucket in any of the following Regions"; each one listed is opt-in). These are the
# regions every account has enabled by default; elsewhere the page is served without access logs.
STANDARD_LOG_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "sa-east-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
)


def site_bucket(scope: Construct, access_log_bucket: s3.IBucket) -> s3.Bucket:
    """The page's private bucket, read only by CloudFront."""
    return s3.Bucket(
        scope,
        "SiteBucket",
        # SSE-S3: CloudFront's origin access control reads it without a key policy; the page is public code.
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_log_bucket,
        server_access_logs_prefix="review-site/",
        lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=Duration.days(30))],
        # Holds only the page, rebuilt by every deploy: nothing to keep when the stack goes.
        removal_policy=RemovalPolicy.RETAIN,
    )


def _headers(
    scope: Construct, photo_bucket: s3.IBucket, user_pool_domain: cognito.UserPoolDomain
) -> cloudfront.ResponseHeadersPolicy:
    region = Aws.REGION
    bucket = photo_bucket.bucket_name
    # Exactly what the page loads: its own files, photos by presigned URL from the photo bucket, the API
    # (any HTTP API of the region: naming this API's id would make the API's CORS origin and the
    # distribution depend on each other) and the Cognito domain's token endpoint.
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' data: https://{bucket}.s3.{region}.amazonaws.com https://{bucket}.s3.amazonaws.com",
            f"connect-src 'self' https://*.execute-api.{region}.amazonaws.com "
            f"https://{user_pool_domain.domain_name}.auth.{region}.amazoncognito.com",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )
    return cloudfront.ResponseHeadersPolicy(
        scope,
        "SecurityHeaders",
        comment="Review page: CSP, HSTS, no framing, no sniffing, no referrer",
        security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
            content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                content_security_policy=policy, override=True
            ),
            strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                access_control_max_age=Duration.days(730), include_subdomains=True, preload=True, override=True
            ),
            content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
            frame_options=cloudfront.ResponseHeadersFrameOptions(
                frame_option=cloudfront.HeadersFrameOption.DENY, override=True
            ),
            referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
            ),
            xss_protection=cloudfront.ResponseHeadersXSSProtection(
                protection=True, mode_block=True, override=True
            ),
        ),
    )


def site_distribution(
    scope: Construct,
    *,
    bucket: s3.IBucket,
    photo_bucket: s3.IBucket,
    user_pool_domain: cognito.UserPoolDomain,
    web_acl_arn: str | None,
    log_bucket: s3.IBucket,
    domain_name: str | None = None,
    certificate_arn: str | None = None,
) -> cloudfront.Distribution:
    """CloudFront in front of the page bucket (origin access control), with the page's security headers, standard
    logs into `log_bucket` where CloudFront delivers them, and `domain_name` served with its certificate."""
    origin = origins.S3BucketOrigin.with_origin_access_control(bucket)
    headers = _headers(scope, photo_bucket, user_pool_domain)
    custom_domain: dict[str, Any] = {}
    if domain_name is not None and certificate_arn is not None:
        # The default *.cloudfront.net certificate takes no security policy; a custom one takes TLSv1.2_2021.
        custom_domain = {
            "domain_names": [domain_name],
            "certificate": acm.Certificate.from_certificate_arn(scope, "Certificate", certificate_arn),
            "minimum_protocol_version": cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
        }
    # CloudFront writes standard logs with an ACL grant: the log bucket has ACLs enabled
    # (stacks/storage/photo_store.py).
    logs: dict[str, Any] = {}
    if standard_logs_possible(scope):
        logs = {"enable_logging": True, "log_bucket": log_bucket, "log_file_prefix": CDN_LOG_PREFIX}
    distribution = cloudfront.Distribution(
        scope,
        "Distribution",
        comment="Photo review page",
        default_root_object="index.html",
        default_behavior=cloudfront.BehaviorOptions(
            origin=origin,
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
            response_headers_policy=headers,
        ),
        additional_behaviors={
            # Written by each deploy (API URL, client id): never served stale.
            "/config.json": cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                response_headers_policy=headers,
            )
        },
        http_version=cloudfront.HttpVersion.HTTP2_AND_3,
        price_class=cloudfront.PriceClass.PRICE_CLASS_100,
        web_acl_id=web_acl_arn,
        **custom_domain,
        **logs,
    )
    if logs and Token.is_unresolved(Stack.of(scope).region):
        _only_where_deliverable(scope, distribution, log_bucket)
    return distribution


def page_origin(distribution: cloudfront.IDistribution, domain_name: str | None) -> str:
    """https://<the page's host>: the custom domain when there is one (the page, sign-in and CORS all use it)."""
    return f"https://{domain_name or distribution.distribution_domain_name}"


def standard_logs_possible(scope: Construct) -> bool:
    """False only for a stack pinned to a region whose buckets CloudFront's standard logs cannot reach."""
    region = Stack.of(scope).region
    return Token.is_unresolved(region) or region in STANDARD_LOG_REGIONS


def _only_where_deliverable(
    scope: Construct, distribution: cloudfront.Distribution, log_bucket: s3.IBucket
) -> None:
    """Environment-agnostic: the region, and so whether the logs can be delivered, is known at deploy time."""
    logging = {"Bucket": log_bucket.bucket_regional_domain_name, "Prefix": CDN_LOG_PREFIX}
    cfn_distribution = distribution.node.default_child
    assert isinstance(cfn_distribution, cloudfront.CfnDistribution)
    regions = [Fn.condition_equals(Aws.REGION, region) for region in STANDARD_LOG_REGIONS]
    condition = CfnCondition(
        scope,
        "StandardLogsDeliverable",
        expression=Fn.condition_or(*(Fn.condition_or(*regions[i : i + 9]) for i in range(0, len(regions), 9))),
    )
    cfn_distribution.add_property_override(
        "DistributionConfig.Logging", Fn.condition_if(condition.logical_id, logging, Aws.NO_VALUE)
    )


def deploy_page(
    scope: Construct,
    *,
    name_prefix: str,
    data_key: kms.IKey,
    bucket: s3.Bucket,
    distribution: cloudfront.Distribution,
    page_config: Mapping[str, Any],
) -> s3deploy.BucketDeployment:
    """Copy review_web/ and this deploy's config.json (`page_config`) into the bucket; invalidate CloudFront."""
    # Our own role and log group instead of the CDK default (AWSLambdaBasicExecutionRole: every log group).
    log_group = encrypted_log_group(
        scope,
        "PageDeploymentLogs",
        log_group_name=review_log_group_name(name_prefix, "page-deployment"),
        key=data_key,
        retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=RemovalPolicy.DESTROY,
    )
    role = lambda_role(
        scope,
        "PageDeploymentRole",
        description="Copies the review page into its bucket and invalidates CloudFront (cdk deploy only)",
        log_group=log_group,
    )
    deployment = s3deploy.BucketDeployment(
        scope,
        "Page",
        sources=[
            s3deploy.Source.asset(str(REVIEW_WEB_DIR)),
            s3deploy.Source.json_data("config.json", page_config),
        ],
        destination_bucket=bucket,
        distribution=distribution,
        distribution_paths=["/*"],
        memory_limit=PAGE_DEPLOYMENT_MEMORY_MB,
        role=role,
        log_group=log_group,
    )
    _acknowledge_page_deployment(scope, role, bucket)
    return deployment


def _acknowledge_page_deployment(scope: Construct, role: iam.Role, bucket: s3.Bucket) -> None:
    reason = (
        "aws-cdk-lib's BucketDeployment grants these to copy the page from the CDK asset bucket (read) into "
        "the review page's own bucket (write/delete, for pruning old files); scoped to those two buckets."
    )
    for action in ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"):
        acknowledge(role, f"AwsSolutions-IAM5[Action::{action}]", reason)
    acknowledge(
        role,
        f"AwsSolutions-IAM5[Resource::{nag_resource(scope, bucket.arn_for_objects('*'))}]",
        reason,
    )
    # The asset bucket's name comes from the stack synthesizer (bootstrap qualifier, account, region).
    document = Stack.of(scope).resolve(role.node.find_child("DefaultPolicy").document)  # type: ignore[attr-defined]
    site = nag_resource(scope, bucket.arn_for_objects("*"))
    for statement in document["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            rendered = nag_resource(scope, plain_sub(resource))
            if rendered.endswith("/*") and rendered != site:
                acknowledge(role, f"AwsSolutions-IAM5[Resource::{rendered}]", reason)
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "cloudfront:CreateInvalidation/GetInvalidation (BucketDeployment invalidates the page after each "
        "deploy) support no narrower resource in this grant; no other action is granted on '*'.",
    )
    singleton = next(
        child for child in Stack.of(scope).node.children if child.node.id.startswith("Custom::CDKBucketDeployment")
    )
    acknowledge(
        singleton,
        "AwsSolutions-L1",
        "The page-deployment function is aws-cdk-lib's own (BucketDeployment); its runtime moves with the "
        "aws-cdk-lib version, which is pinned in requirements.txt.",
    )
