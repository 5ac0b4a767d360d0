"""Human review of uncertain labels: the page (private bucket + CloudFront), Cognito sign-in, the HTTP API and its
Lambda, and a schedule that measures the review backlog.

    reviewer ─HTTPS─▶ CloudFront (OAC, security headers, WAF?) ─▶ private bucket: review_web/ + config.json
       │  Cognito hosted UI (code flow + PKCE, admin-created users, TOTP MFA, groups reviewers / leads)
       └─Bearer ID token─▶ HTTP API (JWT authorizer) ─▶ review Lambda ─▶ labels table (Query by-status, Get,
                                                                          Update, in a transaction with ...)
                                                                 ├─▶ review history table (Put new, Query)
                                                                 └─▶ presigned GET of the labelled photo version

The page's hosting (bucket, CloudFront, deployment) is built by stacks/review/site.py into this construct.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks.common import constants
from stacks.common.encrypted_logs import encrypted_log_group
from stacks.common.lambda_bundling import RUNTIME
from stacks.common.lambda_role import lambda_role
from stacks.common.nag import acknowledge, acknowledge_lambda_tracing, nag_resource
from stacks.config import ConfigError, ReviewPageConfig
from stacks.review.history_table import PARTITION_KEY as HISTORY_PARTITION_KEY
from stacks.review.history_table import SORT_KEY as HISTORY_SORT_KEY
from stacks.review.history_table import table_name as history_table_name
from stacks.review.parts import (
    REVIEW_SERVICE_NAME,
    review_function_code,
    review_log_group_name,
    review_web_acl,
)
from stacks.review.site import (
    deploy_page,
    page_origin,
    site_bucket,
    site_distribution,
    standard_logs_possible,
)
from stacks.storage import labels_table

REVIEW_HANDLER = "review_api.handler.lambda_handler"
# `email` puts the e-mail in the ID token the page sends (review_api/identity.py); `openid` yields an ID token.
PAGE_SCOPES = (cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE)
API_TIMEOUT_SECONDS = 15  # well under HTTP API's 30-s integration limit; a page of 25 items takes < 1 s
API_MEMORY_MB = 512
API_THROTTLE_RATE = 50  # requests/s across all reviewers: a person decides a photo every few seconds
API_THROTTLE_BURST = 100
TOKEN_VALIDITY = Duration.hours(1)  # the page renews ID and access tokens with the refresh token (auth.js)
REFRESH_TOKEN_VALIDITY = Duration.hours(12)  # a working day; the page signs in again after it
# Cognito groups (review_api/identity.py): reviewers decide; leads also override others' decisions and export.
REVIEW_GROUPS = {
    "reviewers": "Decide photos on the review page",
    "leads": "Decide, override another reviewer's decision, export the reviewed photos",
}


class ReviewPage(Construct):
    """The review page, its sign-in, API and Lambda. Public attributes: `url`, `user_pool`, `user_pool_client`,
    `groups`, `history_table`, `api`, `function`, `role`, `site_bucket`, `distribution`, `web_acl` (None unless
    `waf`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        photo_bucket: s3.IBucket,
        table: dynamodb.ITable,
        data_key: kms.IKey,
        access_log_bucket: s3.IBucket,
        upload_prefix: str,
        taxonomy_file: Path,
        metrics_namespace: str,
        config: ReviewPageConfig,
        code: lambda_.Code | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        region = Stack.of(self).region
        # AppConfig refuses this first (one line at synth); a construct built on its own is held to it too.
        if config.waf and region != constants.CLOUDFRONT_REGION:
            raise ConfigError(
                "review.waf",
                f"a CloudFront web ACL can only be created in {constants.CLOUDFRONT_REGION}, this stack is in "
                f"{'an unpinned region' if Token.is_unresolved(region) else region}: pin the stack there or "
                "create one there and set review.web_acl_arn",
            )
        self.site_bucket: s3.Bucket = site_bucket(self, access_log_bucket)
        self.user_pool: cognito.UserPool = self._user_pool()
        self.user_pool_domain: cognito.UserPoolDomain = self.user_pool.add_domain(
            "Domain",
            # Globally unique per region: the account id keeps two accounts' stacks of the same name apart.
            cognito_domain=cognito.CognitoDomainOptions(domain_prefix=f"{name_prefix}-review-{Aws.ACCOUNT_ID}"),
        )
        self.web_acl: wafv2.CfnWebACL | None = review_web_acl(self, name_prefix) if config.waf else None
        self.distribution: cloudfront.Distribution = site_distribution(
            self,
            bucket=self.site_bucket,
            photo_bucket=photo_bucket,
            user_pool_domain=self.user_pool_domain,
            web_acl_arn=self.web_acl.attr_arn if self.web_acl else config.web_acl_arn,
            log_bucket=access_log_bucket,
            domain_name=config.domain_name,
            certificate_arn=config.certificate_arn,
        )
        self.distribution_web_acl: str | None = self.web_acl.attr_arn if self.web_acl else config.web_acl_arn
        self.origin: str = page_origin(self.distribution, config.domain_name)
        self.url: str = f"{self.origin}/"
        self.user_pool_client: cognito.UserPoolClient = self._client()
        self.groups: dict[str, cognito.CfnUserPoolGroup] = {
            name: cognito.CfnUserPoolGroup(
                self,
                f"Group{name.capitalize()}",
                user_pool_id=self.user_pool.user_pool_id,
                group_name=name,
                description=description,
            )
            for name, description in REVIEW_GROUPS.items()
        }
        self.history_table: dynamodb.Table = self._history_table(name_prefix, data_key)
        self.log_group: logs.LogGroup = encrypted_log_group(
            self,
            "FunctionLogs",
            log_group_name=review_log_group_name(name_prefix, "api-function"),
            key=data_key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role: iam.Role = lambda_role(
            self,
            "FunctionRole",
            description="Review API: query/update the labels table, read uploaded photos, write its own logs",
            log_group=self.log_group,
        )
        self.function: lambda_.Function = lambda_.Function(
            self,
            "ApiFunction",
            description="Review API: the queue of uncertain labels and reviewers' decisions",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=REVIEW_HANDLER,
            code=code or review_function_code(taxonomy_file),
            role=self.role,
            timeout=Duration.seconds(API_TIMEOUT_SECONDS),
            memory_size=API_MEMORY_MB,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                "TABLE_NAME": table.table_name,
                "HISTORY_TABLE_NAME": self.history_table.table_name,
                "BUCKET_NAME": photo_bucket.bucket_name,
                "UPLOAD_PREFIX": upload_prefix,
                "TAXONOMY_FILE": taxonomy_file.resolve().relative_to(constants.PROJECT_ROOT).as_posix(),
                "PRESIGNED_URL_SECONDS": str(config.presigned_url_seconds),
                "LEASE_SECONDS": str(config.lease_seconds),
                "POWERTOOLS_SERVICE_NAME": REVIEW_SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
            },
        )
        self._grant(photo_bucket, table, data_key, upload_prefix)
        self.api: apigw.HttpApi = self._api(name_prefix, data_key)
        self.backlog_rule: events.Rule = events.Rule(
            self,
            "BacklogProbe",
            description="Counts the NEEDS_REVIEW backlog for the dashboard (metric ReviewBacklog)",
            schedule=events.Schedule.rate(Duration.minutes(config.backlog_probe_minutes)),
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
        self.deployment: s3deploy.BucketDeployment = deploy_page(
            self,
            name_prefix=name_prefix,
            data_key=data_key,
            bucket=self.site_bucket,
            distribution=self.distribution,
            page_config=self._page_config(),
        )
        self._acknowledge()

    def _page_config(self) -> dict[str, object]:
        """The page's config.json: where the API and the sign-in are (known only once they exist).

        `redirectUri` is the one URI the app client allows (its callback and logout URL, `self.url`): the page
        sends exactly this, whatever path it was opened at (/index.html too), or Cognito answers
        redirect_mismatch.
        """
        return {
            "mode": "cloud",
            "apiBase": self.api.api_endpoint,
            "cognito": {
                "domain": f"https://{self.user_pool_domain.domain_name}.auth.{Aws.REGION}.amazoncognito.com",
                "clientId": self.user_pool_client.user_pool_client_id,
                "redirectUri": self.url,
                "scopes": " ".join(scope.scope_name for scope in PAGE_SCOPES),
            },
        }

    def _history_table(self, name_prefix: str, data_key: kms.IKey) -> dynamodb.Table:
        """Every change to a decision, appended (review_api/decisions.py); the API may only add and read."""
        return dynamodb.Table(
            self,
            "HistoryTable",
            table_name=history_table_name(name_prefix),
            partition_key=dynamodb.Attribute(name=HISTORY_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=HISTORY_SORT_KEY, type=dynamodb.AttributeType.NUMBER),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=data_key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,  # the audit trail outlives the stack
        )

    # -- sign-in ----------------------------------------------------------------------------------------------

    def _user_pool(self) -> cognito.UserPool:
        return cognito.UserPool(
            self,
            "Reviewers",
            # Administrators create reviewers (aws cognito-idp admin-create-user); nobody signs themselves up.
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            feature_plan=cognito.FeaturePlan.ESSENTIALS,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _client(self) -> cognito.UserPoolClient:
        return self.user_pool.add_client(
            "PageClient",
            # A browser cannot keep a secret: a public client with the code flow and PKCE (the page's auth.js).
            generate_secret=False,
            auth_flows=cognito.AuthFlow(
                user_srp=False, user_password=False, admin_user_password=False, custom=False
            ),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True, implicit_code_grant=False),
                scopes=list(PAGE_SCOPES),
                callback_urls=[self.url],
                logout_urls=[self.url],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            access_token_validity=TOKEN_VALIDITY,
            id_token_validity=TOKEN_VALIDITY,
            refresh_token_validity=REFRESH_TOKEN_VALIDITY,
            enable_token_revocation=True,
        )

    # -- the API ----------------------------------------------------------------------------------------------

    def _api(self, name_prefix: str, data_key: kms.IKey) -> apigw.HttpApi:
        api = apigw.HttpApi(
            self,
            "Api",
            api_name=f"{name_prefix}-review",
            description="Review API (JWT authorizer: the review user pool)",
            cors_preflight=apigw.CorsPreflightOptions(
                allow_origins=[self.origin],
                allow_methods=[apigw.CorsHttpMethod.GET, apigw.CorsHttpMethod.POST],
                allow_headers=["Authorization", "Content-Type"],
                max_age=Duration.hours(1),
            ),
            create_default_stage=False,
        )
        authorizer = authorizers.HttpUserPoolAuthorizer(
            "Reviewers", self.user_pool, user_pool_clients=[self.user_pool_client]
        )
        api.add_routes(
            path="/api/{proxy+}",
            methods=[apigw.HttpMethod.GET, apigw.HttpMethod.POST],
            integration=integrations.HttpLambdaIntegration("Function", self.function),
            authorizer=authorizer,
        )
        access_logs = encrypted_log_group(
            self,
            "ApiAccessLogs",
            log_group_name=review_log_group_name(name_prefix, "api-access"),
            key=data_key,
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=RemovalPolicy.DESTROY,
        )
        stage = apigw.HttpStage(
            self,
            "Stage",
            http_api=api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=API_THROTTLE_RATE, burst_limit=API_THROTTLE_BURST),
        )
        # Who called what, when, with which result; `sub` names the reviewer (escape hatch: no L2 property).
        cfn_stage = stage.node.default_child
        assert isinstance(cfn_stage, apigw.CfnStage)
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=access_logs.log_group_arn,
            format=(
                '{"requestId":"$context.requestId","time":"$context.requestTime","method":"$context.httpMethod",'
                '"path":"$context.path","status":"$context.status","latencyMs":"$context.responseLatency",'
                '"sub":"$context.authorizer.claims.sub","email":"$context.authorizer.claims.email",'
                '"ip":"$context.identity.sourceIp",'
                '"error":"$context.authorizer.error"}'
            ),
        )
        return api

    def _grant(
        self, photo_bucket: s3.IBucket, table: dynamodb.ITable, data_key: kms.IKey, upload_prefix: str
    ) -> None:
        # The queue: Query on the by-status index only; decisions: GetItem + conditional UpdateItem on the table.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"], resources=[f"{table.table_arn}/index/{labels_table.BY_STATUS.name}"]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["dynamodb:GetItem", "dynamodb:UpdateItem"], resources=[table.table_arn])
        )
        # History: add an entry (in the decision's transaction) and read a photo's entries; never update or delete.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:Query"], resources=[self.history_table.table_arn]
            )
        )
        # Presigned URLs carry the role's permission: only photos under the upload prefix, any version of them.
        uploads_arn = photo_bucket.arn_for_objects(f"{upload_prefix}*")
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[uploads_arn])
        )
        # So a deleted photo answers 404 (shown as "photo gone") instead of 403; listing stays inside the prefix.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[photo_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{upload_prefix}*"]}},
            )
        )
        # The data key encrypts the photos (read: Decrypt) and the table (DynamoDB acts for the caller).
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[data_key.key_arn],
            )
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, uploads_arn)}]",
            "Reviewers look at any photo uploaded under the upload prefix (one presigned GET per photo shown); "
            "objects outside the prefix stay unreadable.",
        )

    def _acknowledge(self) -> None:
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR1",
            "No geo restriction: the content team works from several countries; every request past the static "
            "page needs a Cognito sign-in with MFA.",
        )
        if self.distribution_web_acl is None:
            acknowledge(
                self.distribution,
                "AwsSolutions-CFR2",
                "WAF is optional (review.waf / review.web_acl_arn): the distribution serves a static page and "
                "the API answers only signed-in reviewers; CloudFront web ACLs must live in us-east-1.",
            )
        if not standard_logs_possible(self):
            acknowledge(
                self.distribution,
                "AwsSolutions-CFR3",
                "CloudFront's standard logs cannot be delivered to a bucket in this (opt-in) region; every API "
                "call is still logged in the API's access log (docs/review-page.md).",
            )
        if self.config.domain_name is None:
            acknowledge(
                self.distribution,
                "AwsSolutions-CFR4",
                "Served on the default *.cloudfront.net certificate, whose TLS policy CloudFront fixes (a minimum "
                "protocol version has no effect on it); review.domain_name with its own certificate raises it to "
                "TLSv1.2_2021.",
            )
        acknowledge(
            self.user_pool,
            "AwsSolutions-COG8",
            "The Plus feature plan (threat protection) is billed per active user; a few admin-created reviewers "
            "signing in with a 12-character password and required TOTP MFA are covered by the Essentials plan.",
        )
        acknowledge_lambda_tracing(self.role)
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to Python 3.12 on purpose: the bundle's wheels are fetched for cp312 and the runtime must "
            "match them; move both together (constants.LAMBDA_PYTHON_VERSION).",
        )


__all__ = ["ReviewPage"]
