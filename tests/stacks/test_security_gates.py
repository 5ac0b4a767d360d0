"""Gates: cdk-nag AwsSolutions (with a negative control), cfn-lint, and synth without AWS or credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from app import build_app
from stacks.common import nag
from tests.stacks.conftest import (
    MODEL_URI,
    PROJECT_ROOT,
    VARIANT_OVERRIDES,
    VARIANTS,
    Synthesized,
    cdk_json_context,
)
from tests.stacks.intrinsics import resolve


@pytest.mark.parametrize("variant", VARIANTS)
def test_cdk_nag_finds_nothing_unacknowledged(variant: str, request: pytest.FixtureRequest) -> None:
    synthesized: Synthesized = request.getfixturevalue(variant)
    violations = AwsSolutionsChecks().validate_scope(synthesized.stack).violations
    assert [v.rule_name for v in violations] == []


class _RecordedAcknowledgements:
    """Stands in for aws_cdk.Validations in stacks/common/nag.py: records acknowledgements
    instead of applying them."""

    made: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, scope: IConstruct) -> None:
        self._path = scope.node.path

    @classmethod
    def of(cls, scope: IConstruct) -> _RecordedAcknowledgements:
        return cls(scope)

    def acknowledge(self, acknowledgment: cdk.Acknowledgment) -> None:
        self.made.append((self._path, acknowledgment.id))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_acknowledgement_suppresses_a_finding_cdk_nag_really_reports(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the stack built with every acknowledgement recorded instead of applied
    monkeypatch.setattr(nag, "Validations", _RecordedAcknowledgements)
    monkeypatch.setattr(_RecordedAcknowledgements, "made", [])
    context = {**cdk_json_context(), "aws:cdk:bundling-stacks": [], **VARIANT_OVERRIDES[variant]}
    _app, stack = build_app(cdk.App(context=context))
    # When cdk-nag checks it
    findings = [
        (violation.rule_name, resource.construct_path)
        for violation in AwsSolutionsChecks().validate_scope(stack).violations
        for resource in violation.violating_resources
    ]
    # Then each acknowledgement matches a finding on its construct or below (a dead one would hide nothing now
    # and silently hide a future finding), and each finding has its acknowledgement
    dead = [
        (path, rule)
        for path, rule in _RecordedAcknowledgements.made
        if not any(found == rule and (where == path or where.startswith(f"{path}/")) for found, where in findings)
    ]
    assert dead == [], "\n".join(map(str, dead))
    unacknowledged = [
        (rule, where)
        for rule, where in findings
        if not any(
            rule == made and (where == path or where.startswith(f"{path}/"))
            for path, made in _RecordedAcknowledgements.made
        )
    ]
    assert unacknowledged == [], "\n".join(map(str, unacknowledged))


def test_negative_control_the_nag_gate_catches_a_bare_bucket() -> None:
    # Given a stack with a bucket that has none of our settings
    stack = cdk.Stack(cdk.App(), "Bare")
    s3.Bucket(stack, "Bare")
    # Then the same check reports it (so an empty report above means something)
    rules = {v.rule_name for v in AwsSolutionsChecks().validate_scope(stack).violations}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


def _cfn_lint(template: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template))
    return subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_cfn_lint_reports_no_errors(variant: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    synthesized: Synthesized = request.getfixturevalue(variant)
    result = _cfn_lint(synthesized.json, tmp_path)
    # Exit code: bit 1 = fatal, 2 = errors, 4 = warnings, 8 = informational; docs/security.md lists the warnings.
    assert result.returncode & ~(4 | 8) == 0, result.stdout + result.stderr
    assert "template.json" in result.stdout or result.returncode == 0  # cfn-lint really ran on the file


def test_negative_control_cfn_lint_catches_a_bad_instance_type(with_model: Synthesized, tmp_path: Path) -> None:
    template = json.loads(json.dumps(with_model.json))
    config = next(r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::EndpointConfig")
    config["Properties"]["ProductionVariants"][0]["InstanceType"] = "ml.g5.xlargee"
    result = _cfn_lint(template, tmp_path)
    assert result.returncode & 2, result.stdout + result.stderr
    assert "ml.g5.xlargee" in result.stdout


@pytest.mark.slow
def test_synth_makes_no_aws_call_and_needs_no_credentials(tmp_path: Path) -> None:
    # Given no credentials at all, no instance metadata, and every socket connection refused in the app process
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(
        "import socket\n"
        "def _refuse(self, address, *a, **k):\n"
        "    if self.family in (socket.AF_INET, socket.AF_INET6):\n"
        "        raise OSError(f'network access during synth: {address}')\n"
        "    return _connect(self, address, *a, **k)\n"
        "_connect = socket.socket.connect\n"
        "socket.socket.connect = _refuse\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "PYTHONPATH": f"{guard}{os.pathsep}{PROJECT_ROOT}",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            # How the CDK CLI hands context and the output folder to the app.
            "CDK_CONTEXT_JSON": json.dumps(
                {
                    **cdk_json_context(),
                    "photo_labeler.endpoint.model_data_uri": MODEL_URI,
                    "aws:cdk:bundling-stacks": [],
                }
            ),
            "CDK_OUTDIR": str(tmp_path / "cdk.out"),
        }
    )
    # When app.py synthesizes
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False
    )
    # Then it succeeds, writes the template, and asks for no context lookups (which would need AWS)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "cdk.out" / "manifest.json").read_text())
    assert "missing" not in manifest
    template = json.loads((tmp_path / "cdk.out" / "photo-labeler.template.json").read_text())
    assert any(r["Type"] == "AWS::SageMaker::Endpoint" for r in template["Resources"].values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_ecr_pull_grants_name_the_image_account_never_any_account(
    variant: str, request: pytest.FixtureRequest
) -> None:
    # The pulling roles get the repository in the one account that publishes the image in the stack's region.
    synthesized: Synthesized = request.getfixturevalue(variant)
    template = synthesized.json
    region = "ap-east-1" if variant == "regional" else "us-east-1"
    found = []
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "ecr:BatchGetImage" in statement["Action"]:
                arn = resolve(statement["Resource"], template)
                account = arn.split(":")[4]
                repository = arn.rsplit("/", 1)[1]
                table = "djl_lmi_images.json" if repository == "djl-inference" else "hf_training_images.json"
                registries = json.dumps(
                    json.loads((PROJECT_ROOT / "stacks" / "common" / "data" / table).read_text())
                )
                found.append((repository, account))
                assert account != "*" and f'"{region}": "{account}"' in registries, arn
    assert {repository for repository, _ in found} >= {"huggingface-pytorch-training"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_service_principal_in_a_key_policy_is_held_to_this_account(
    variant: str, request: pytest.FixtureRequest
) -> None:
    # A service-principal statement without aws:SourceAccount/SourceArn (or, for CloudWatch Logs, the log group's
    # encryption context) lets that service use the key on behalf of any account (confused deputy).
    synthesized: Synthesized = request.getfixturevalue(variant)
    unconditioned = []
    for key_id, key in synthesized.resources("AWS::KMS::Key").items():
        for statement in key["Properties"]["KeyPolicy"]["Statement"]:
            if "Service" not in statement["Principal"]:
                continue
            keys = {k for operands in statement.get("Condition", {}).values() for k in operands}
            scoped = "aws:SourceAccount" in keys or "kms:EncryptionContext:aws:logs:arn" in keys
            if not scoped:
                unconditioned.append((key_id, json.dumps(statement["Principal"]), statement["Action"]))
    assert unconditioned == []


def test_cdk_added_log_delivery_and_s3_statements_name_this_account_and_the_source(
    scoped_backfill: Synthesized,
) -> None:
    statements = [
        s
        for key in scoped_backfill.resources("AWS::KMS::Key").values()
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s["Principal"].get("Service") in ("delivery.logs.amazonaws.com", "s3.amazonaws.com")
    ]
    assert len(statements) == 3
    template = scoped_backfill.json
    for statement in statements:
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        source = resolve(statement["Condition"]["ArnLike"]["aws:SourceArn"], template)
        if statement["Principal"]["Service"] == "s3.amazonaws.com":
            assert source.endswith("StorageImageBucket99BA9550-Arn")  # the image bucket's ARN placeholder
        else:
            assert source == "arn:aws:logs:us-east-1:123456789012:*"


def test_the_training_role_gets_no_key_reencryption(with_model: Synthesized) -> None:
    actions = [
        action
        for policy in with_model.resources("AWS::IAM::Policy").values()
        if any("TrainingPipelineTrainingRole" in json.dumps(r) for r in policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    ]
    assert "sagemaker:CreateTrainingJob" not in actions and "s3:PutObject" in actions  # the right role
    assert sorted(a for a in actions if a.startswith("kms:")) == [
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:GenerateDataKey*",
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_role_may_read_old_object_versions(variant: str, request: pytest.FixtureRequest) -> None:
    # The labeller reads the current version with IfMatch (labeller_aws.S3ObjectStore.get): s3:GetObjectVersion
    # on the photo bucket would only widen what a leaked credential could read. The one exception is the review
    # API, which presigns the exact version that was labelled (issue 12), under the upload prefix only.
    synthesized: Synthesized = request.getfixturevalue(variant)
    granted = [
        (name, statement["Action"], statement["Resource"])
        for name, policy in synthesized.resources("AWS::IAM::Policy").items()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "StorageImageBucket" in json.dumps(statement["Resource"])
        and (
            "s3:GetObjectVersion" in json.dumps(statement["Action"])
            or "s3:GetObject*" in json.dumps(statement["Action"])
        )
    ]
    review = [grant for grant in granted if grant[0].startswith("ReviewFunctionRole")]
    assert [grant for grant in granted if grant not in review] == []
    for _, actions, resource in review:
        assert actions == ["s3:GetObject", "s3:GetObjectVersion"]
        assert resource["Fn::Join"][1][1] == "/uploads/*"  # the image bucket's upload prefix, nothing wider


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_named_log_group_outlives_the_stack(variant: str, request: pytest.FixtureRequest) -> None:
    # A retained log group with a fixed name makes the next deploy after `cdk destroy` fail ("already exists").
    synthesized: Synthesized = request.getfixturevalue(variant)
    retained = [
        resource["Properties"]["LogGroupName"]
        for resource in synthesized.resources("AWS::Logs::LogGroup").values()
        if "LogGroupName" in resource["Properties"] and resource.get("DeletionPolicy") != "Delete"
    ]
    assert retained == []
