"""The training pipeline's logs, tracing and IAM scope (stacks/training_pipeline/roles.py): exact resources, the
roles it may pass, and cdk-nag clean."""

from __future__ import annotations

from cdk_nag import AwsSolutionsChecks

from tests.stacks.conftest import Synthesized
from tests.stacks.training_pipeline.training_pipeline_testkit import (
    actions,
    render,
    role_policy_statements,
    state_machine,
)


def test_state_machine_logs_everything_encrypted_and_traces(registry: Synthesized) -> None:
    properties = state_machine(registry)["Properties"]
    assert properties["LoggingConfiguration"]["Level"] == "ALL"
    assert properties["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert properties["TracingConfiguration"] == {"Enabled": True}
    assert properties["EncryptionConfiguration"]["Type"] == "CUSTOMER_MANAGED_KMS_KEY"
    (log_group,) = [
        g
        for g in registry.resources("AWS::Logs::LogGroup").values()
        if g["Properties"].get("LogGroupName") == "/aws/vendedlogs/states/photo-labeler-training"
    ]
    assert "KmsKeyId" in log_group["Properties"] and log_group["Properties"]["RetentionInDays"] == 365


def test_state_machine_role_passes_only_sagemaker_roles_and_names_exact_resources(registry: Synthesized) -> None:
    statements = role_policy_statements(registry, "TrainingPipelineStateMachineRole")
    (pass_role,) = [s for s in statements if "iam:PassRole" in actions(s)]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert sorted(r["Fn::GetAtt"][0][:12] for r in pass_role["Resource"]) == ["InferenceExe", "TrainingPipe"]
    for statement in statements:
        if statement["Resource"] == "*":
            # Only the logging/tracing actions CDK adds, which have no resource-level permissions
            assert all(a.startswith(("logs:", "xray:")) for a in actions(statement)), statement
    (training,) = [s for s in statements if "sagemaker:CreateTrainingJob" in actions(s)]
    assert render(training["Resource"]).endswith(":training-job/photo-labeler-*")
    (put,) = [s for s in statements if "ssm:putParameter" in actions(s)]
    assert render(put["Resource"]) == "arn:aws:ssm:us-east-1:123456789012:parameter/photo-labeler/model/current"
    (update,) = [s for s in statements if "sagemaker:updateEndpoint" in actions(s)]
    assert sorted(render(r) for r in update["Resource"]) == [
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/photo-labeler-*",
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint/photo-labeler-llava-realtime-g5-xlarge",
    ]


def _rollout_alarm_ids(synthesized: Synthesized) -> list[str]:
    return sorted(
        logical_id
        for logical_id, alarm in synthesized.resources("AWS::CloudWatch::Alarm").items()
        if alarm["Properties"].get("AlarmName", "").startswith("photo-labeler-llava-realtime-g5-xlarge-rollout-")
    )


def test_the_role_that_calls_update_endpoint_may_describe_exactly_the_rollback_alarms(
    registry: Synthesized,
) -> None:
    # Given the pipeline rolls out with UpdateEndpoint and an AutoRollbackConfiguration naming two alarms
    statements = role_policy_statements(registry, "TrainingPipelineStateMachineRole")
    # Then its role may read those two alarms (deployment guardrails need it) and no other alarm
    (describe,) = [s for s in statements if "cloudwatch:DescribeAlarms" in actions(s)]
    assert actions(describe) == ["cloudwatch:DescribeAlarms"]
    assert sorted(r["Fn::GetAtt"][0] for r in describe["Resource"]) == _rollout_alarm_ids(registry)
    assert all(r["Fn::GetAtt"][1] == "Arn" for r in describe["Resource"])


def test_a_pipeline_that_never_rolls_out_gets_no_alarm_access(with_model: Synthesized) -> None:
    statements = role_policy_statements(with_model, "TrainingPipelineStateMachineRole")
    assert not [s for s in statements if any(a.startswith("cloudwatch:") for a in actions(s))]


def test_training_role_writes_only_models_and_checkpoints(registry: Synthesized) -> None:
    statements = role_policy_statements(registry, "TrainingPipelineTrainingRole")
    writes = [s for s in statements if "s3:PutObject" in actions(s) or "s3:DeleteObject" in actions(s)]
    written = sorted(
        render(r) for s in writes for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    )
    assert written == [
        "arn:aws:ModelStoreBucket9405F36E/checkpoints/*",
        "arn:aws:ModelStoreBucket9405F36E/checkpoints/*",
        "arn:aws:ModelStoreBucket9405F36E/models/*",
    ]
    # The code archive is readable by its exact key, never the whole CDK asset bucket
    asset_reads = [
        (actions(st), resource)
        for st in statements
        for resource in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])
        if "cdk-hnb659fds-assets" in render(resource)
    ]
    assert [a for a, _ in asset_reads] == [["s3:GetObject"]]
    assert not render(asset_reads[0][1]).endswith("*")
    assert not [s for s in statements if any(a.endswith(":*") for a in actions(s))]


def test_cdk_nag_is_clean_when_the_pipeline_rolls_out(registry: Synthesized) -> None:
    assert [v.rule_name for v in AwsSolutionsChecks().validate_scope(registry.stack).violations] == []
