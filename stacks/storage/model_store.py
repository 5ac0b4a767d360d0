"""The model store: the training bucket (datasets, base weights, models, checkpoints) and the model registry.

Its own module because three capabilities read it: the training pipeline writes models and the registry, the
endpoint serves the registered model, and both labellers (upload path, backfill) read the registry to name the
model in each label. Keeping it here keeps those imports one floor deep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aws_cdk import CfnParameter, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from classification.model_profile import PROFILE_FILE
from stacks.common import constants
from stacks.common.nag import acknowledge, nag_resource

_S3_PREFIX_URI_RE = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.*)$")


def registry_parameter_name(name_prefix: str) -> str:
    """The SSM parameter the pipeline writes and a registry-serving deploy reads."""
    return f"/{name_prefix}/model/current"


class ModelStore(Construct):
    """The training bucket (datasets, base weights, trained models, checkpoints) and the model registry parameter.

    A bucket of its own, not the photo bucket: checkpoint churn (~120 GB every save) needs its own lifecycle, the
    training role never touches photos, and a backfill over the photo bucket never meets model files.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        data_key: kms.IKey,
        access_log_bucket: s3.IBucket,
        checkpoint_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.data_key = data_key
        self.parameter_name = registry_parameter_name(name_prefix)
        self.parameter_arn: str = Stack.of(self).format_arn(
            service="ssm", resource="parameter", resource_name=self.parameter_name.lstrip("/")
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=data_key,
            bucket_key_enabled=True,  # checkpoints are thousands of shards: one KMS call per bucket-key period
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,  # an approved model is never lost to an overwrite
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_log_bucket,
            server_access_logs_prefix="training-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-checkpoints",
                    prefix=constants.CHECKPOINTS_PREFIX,
                    expiration=Duration.days(checkpoint_retention_days),
                    # save_total_limit deletes old checkpoints as training goes: do not keep them as versions.
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="purge-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(constants.ABORT_INCOMPLETE_UPLOAD_DAYS),
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.models_uri = f"s3://{self.bucket.bucket_name}/{constants.MODELS_PREFIX}"

    def profile_records(self) -> ProfileRecords:
        """The profile records of every model the registry can name: trained and staged base models."""
        prefixes = (constants.MODELS_PREFIX, constants.BASE_MODELS_PREFIX)
        return ProfileRecords(
            bucket_arn=self.bucket.bucket_arn, keys=tuple(f"{prefix}*/{PROFILE_FILE}" for prefix in prefixes)
        )

    def grant_read_registry(self, grantee: iam.IGrantable) -> iam.Grant:
        """ssm:GetParameter on the registry parameter only (a String parameter: no kms:Decrypt needed).

        The labellers read it (MODEL_PARAMETER_NAME, stacks/labelling/labeller_function.py) so that labels name the
        model a pipeline rollout put on the endpoint, not the one the last deploy saw. MODEL_ID, fixed at deploy
        time, is their fallback while the parameter does not exist yet.
        """
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["ssm:GetParameter"], resource_arns=[self.parameter_arn]
        )

    def registered_model_uri(self) -> str:
        """The registry's value, read by CloudFormation at deploy time (never a literal in the template).

        A parameter of type AWS::SSM::Parameter::Value<String> is resolved on every create/update, and the CDK CLI
        always deploys a stack that has one (its description lacks `[cdk:skip]`). A `{{resolve:ssm:...}}` dynamic
        reference would not do: an unchanged template is skipped by the CLI and not re-resolved.
        """
        parameter = CfnParameter(
            Stack.of(self),
            "RegisteredModelDataUri",
            type="AWS::SSM::Parameter::Value<String>",
            default=self.parameter_name,
            description=(
                "SSM parameter holding the S3 prefix of the model the training pipeline last approved and rolled "
                "out; the endpoint serves it (re-read on every deploy)"
            ),
        )
        return parameter.value_as_string


def grant_read_model(role: iam.Role, model_data_uri: str) -> str:
    """s3:GetObject on every file under a model's prefix (`s3://bucket/prefix/`, any bucket), and s3:ListBucket
    kept inside that prefix: SageMaker lists S3Prefix model data and S3 channels before it reads them.

    The endpoint's model and scheduled mode's labelling job both read their weights this way. Returns the objects'
    ARN, for the caller's cdk-nag reason.
    """
    bucket, _, key_prefix = model_data_uri.removeprefix("s3://").partition("/")
    bucket_arn = Stack.of(role).format_arn(service="s3", region="", account="", resource=bucket)
    objects_arn = f"{bucket_arn}/{key_prefix}*"
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[objects_arn]))
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{key_prefix}*"]}},
        )
    )
    return objects_arn


@dataclass(frozen=True)
class ProfileRecords:
    """Where the model_profile.json of each model the endpoint may serve lives (classification/model_profile.py).

    The labellers read the served model's record to pick the request and the routing rule; this grants exactly
    those objects. They list the key before reading it (lambda/labeller_aws.S3ModelProfiles), so ListBucket is
    granted for those keys only (an `s3:prefix` condition), and a model without a record reads as absent, not 403.
    """

    bucket_arn: str
    keys: tuple[str, ...]  # object keys; `*` stands for a model's folder

    @classmethod
    def of_model(cls, scope: Construct, model_data_uri: str) -> ProfileRecords:
        """The one record of a pinned model (`endpoint.model_data_uri`, a literal `s3://bucket/prefix/`)."""
        match = _S3_PREFIX_URI_RE.match(model_data_uri)
        if match is None:
            raise ValueError(f"{model_data_uri!r} is not an s3://bucket/prefix/ URI")
        bucket_arn = Stack.of(scope).format_arn(service="s3", region="", account="", resource=match["bucket"])
        return cls(bucket_arn=bucket_arn, keys=(match["key"] + PROFILE_FILE,))

    def grant_read(self, role: iam.IRole, scope: Construct) -> None:
        objects = [f"{self.bucket_arn}/{key}" for key in self.keys]
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=objects))
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket_arn],
                conditions={"StringLike": {"s3:prefix": list(self.keys)}},
            )
        )
        for arn in objects:
            if "*" in arn:
                acknowledge(
                    scope,
                    f"AwsSolutions-IAM5[Resource::{nag_resource(scope, arn)}]",
                    "Reads only the model_profile.json of each model folder (one per training run or staged base "
                    "model, named at run time): which profile the served model needs, never its weights.",
                )


__all__ = ["ModelStore", "ProfileRecords", "grant_read_model", "registry_parameter_name"]
