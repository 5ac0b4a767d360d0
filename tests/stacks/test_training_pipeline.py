"""The training pipeline (Step Functions), its IAM scope and the model lifecycle in the synthesized template.

The state machine is written in JSONata; the expressions that decide something (input validation, the accuracy
gate, the model URI) are taken from the synthesized definition and evaluated with a JSONata engine, so these tests
check what Step Functions will run, not a copy of it.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsonata
import pytest
from cdk_nag import AwsSolutionsChecks

from stacks.config import ConfigError
from stacks.model_store import registry_parameter_name
from stacks.training_asset import ENTRY_POINT, archive_members, build_archive, training_code_asset
from stacks.training_image import TrainingImageTable, UnsupportedTrainingImage
from tests.stacks.conftest import MODEL_URI, Synthesized

BUCKET = "training-bucket"  # what the training bucket's Ref renders to in these tests
STATE_MACHINE_NAME = "photo-labeler-training"
REGISTRY = {"photo_labeler.training.serve_registered_model": "true"}
START = "2026-11-25T10:11:12.345Z"


# --- helpers ----------------------------------------------------------------------------------------------------


def _render(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return ",".join(_render(item) for item in node)
    (function, argument), *_ = node.items()
    if function == "Ref":
        return {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}.get(
            argument, BUCKET if argument.startswith("ModelStoreBucket") else f"REF-{argument}"
        )
    if function == "Fn::Sub":
        return argument.replace("${AWS::AccountId}", "123456789012").replace("${AWS::Region}", "us-east-1")
    if function == "Fn::GetAtt":
        return f"arn:aws:{argument[0]}"
    if function == "Fn::FindInMap":
        return "763104351884" if argument[2] == "account" else "amazonaws.com"
    if function == "Fn::Join":
        return argument[0].join(_render(part) for part in argument[1])
    if function == "Fn::Select":  # the ECR grant's account: Fn::Select 0 of Fn::Split "." of the image URI
        index, (split,) = argument[0], argument[1].values()
        return _render(split[1]).split(split[0])[index]
    raise AssertionError(f"unexpected token {node!r}")


def state_machine(synthesized: Synthesized) -> dict[str, Any]:
    (machine,) = [
        r
        for r in synthesized.resources("AWS::StepFunctions::StateMachine").values()
        if r["Properties"].get("StateMachineName") == STATE_MACHINE_NAME
    ]
    return machine


def definition(synthesized: Synthesized) -> dict[str, Any]:
    return json.loads(_render(state_machine(synthesized)["Properties"]["DefinitionString"]))


def evaluate(expression: str, **bindings: Any) -> Any:
    """Evaluate a `{% ... %}` JSONata string as Step Functions would, with `$states` and variables bound."""
    assert expression.startswith("{%") and expression.endswith("%}"), expression
    compiled = jsonata.Jsonata(expression[2:-2])
    compiled.register_lambda("parse", json.loads)  # a Step Functions addition to JSONata
    return compiled.evaluate(None, bindings)


def request_for(states: Mapping[str, Any], execution_input: Any) -> tuple[dict[str, Any], list[str]]:
    """The normalized request and the problems ReadRequest / ValidateRequest compute for an execution input."""
    bound = {"input": execution_input, "context": {"Execution": {"StartTime": START, "Name": "exec-1"}}}
    request = evaluate(states["ReadRequest"]["Assign"]["request"], states=bound)
    problems = evaluate(states["ValidateRequest"]["Assign"]["problems"], states=bound, request=request)
    return request, problems


def role_policy_statements(synthesized: Synthesized, role_fragment: str) -> list[dict[str, Any]]:
    statements = []
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if any(role_fragment in ref["Ref"] for ref in policy["Properties"]["Roles"]):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    assert statements, f"no policy for a role like {role_fragment}"
    return statements


def actions(statement: Mapping[str, Any]) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


VALID_INPUT = {"dataset_s3_uri": f"s3://{BUCKET}/datasets/hotels-2026-11/", "run_name": "hotels-2026-11"}


# --- the training task ------------------------------------------------------------------------------------------


def test_training_runs_on_p5_synchronously_with_uncompressed_output_and_s3_checkpoints(
    registry: Synthesized,
) -> None:
    # Given the committed config (defaults of the training section)
    train = definition(registry)["States"]["Train"]
    # Then the optimized .sync integration trains on one ml.p5.48xlarge for at most 2 days, on demand
    assert train["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    arguments = train["Arguments"]
    assert arguments["ResourceConfig"]["InstanceType"] == "ml.p5.48xlarge"
    assert arguments["StoppingCondition"] == {"MaxRuntimeInSeconds": 172800}
    assert arguments["EnableManagedSpotTraining"] is False
    # And the model directory lands uncompressed, KMS-encrypted, in the training bucket (directly servable)
    assert arguments["OutputDataConfig"]["CompressionType"] == "NONE"
    assert arguments["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/models/"
    assert arguments["OutputDataConfig"]["KmsKeyId"].startswith("arn:aws:StorageKey")
    # And checkpoints sync to a per-job S3 prefix from SageMaker's default local path (launch.py's default)
    checkpoint = arguments["CheckpointConfig"]
    assert checkpoint["LocalPath"] == "/opt/ml/checkpoints"
    assert evaluate(checkpoint["S3Uri"], request={"job_name": "photo-labeler-r1"}) == (
        f"s3://{BUCKET}/checkpoints/photo-labeler-r1/"
    )
    # And the image is the Hugging Face PyTorch training DLC, resolved per region
    image = arguments["AlgorithmSpecification"]["TrainingImage"]
    assert image.endswith("/huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04")


def test_training_hosts_exchange_weights_encrypted(registry: Synthesized) -> None:
    # Given a multi-node run (an execution may ask for up to training.max_instance_count hosts)
    arguments = definition(registry)["States"]["Train"]["Arguments"]
    # Then ZeRO-3's parameter and gradient exchange between hosts is encrypted in transit
    assert arguments["EnableInterContainerTrafficEncryption"] is True


def test_training_code_and_channels_follow_the_launcher_contract(registry: Synthesized) -> None:
    arguments = definition(registry)["States"]["Train"]["Arguments"]
    request = {"hyperparameters": {"num_train_epochs": "3", "evaluate": "true"}, "dataset_s3_uri": "s3://b/d/"}
    hyperparameters = evaluate(arguments["HyperParameters"], request=request)
    # The toolkit runs training_job/launch.py from the code archive, with the execution's overrides
    assert hyperparameters["sagemaker_program"] == ENTRY_POINT == "training_job/launch.py"
    assert hyperparameters["sagemaker_submit_directory"].startswith(
        "s3://cdk-hnb659fds-assets-123456789012-us-east-1/"
    )
    assert hyperparameters["num_train_epochs"] == "3"
    # The dataset is the `train` channel (SM_CHANNEL_TRAIN); base weights become `model` only when given
    channels = evaluate(arguments["InputDataConfig"], request={**request, "base_model_s3_uri": None})
    assert [c["ChannelName"] for c in channels] == ["train"]
    assert channels[0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/d/"
    with_base = evaluate(arguments["InputDataConfig"], request={**request, "base_model_s3_uri": "s3://b/base/"})
    assert [c["ChannelName"] for c in with_base] == ["train", "model"]


def test_config_section_reaches_the_training_task(synth_app: Callable[..., Synthesized]) -> None:
    # Given spot training on two instances, a 1-hour runtime and an extra hyper-parameter
    synthesized = synth_app(
        {
            **REGISTRY,
            "photo_labeler.training.instance_count": "2",
            "photo_labeler.training.use_spot": "true",
            "photo_labeler.training.max_runtime_seconds": "3600",
            "photo_labeler.training.hyperparameters": '{"image_token_profile": "compact", "num_train_epochs": 3}',
        }
    )
    states = definition(synthesized)["States"]
    arguments = states["Train"]["Arguments"]
    # Then spot is on, waiting for capacity is bounded, and the defaults of a run carry the configured values
    assert arguments["EnableManagedSpotTraining"] is True
    assert arguments["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    request, problems = request_for(states, VALID_INPUT)
    assert problems == []
    assert request["instance_count"] == 2
    assert request["hyperparameters"] == {
        "image_token_profile": "compact",
        "num_train_epochs": "3",
        "evaluate": "true",
        "confidence_threshold": "0.8",
    }


# --- the execution input --------------------------------------------------------------------------------------


def test_a_valid_input_gets_defaults_and_a_prefixed_job_name(registry: Synthesized) -> None:
    states = definition(registry)["States"]
    request, problems = request_for(states, VALID_INPUT)
    assert problems == []
    assert request["job_name"] == "photo-labeler-hotels-2026-11"
    assert request["instance_count"] == 1 and request["min_accuracy"] == 0.9
    # The evaluation counts NEEDS_REVIEW photos at the upload path's own threshold (cdk.json: 0.8)
    assert request["hyperparameters"] == {"evaluate": "true", "confidence_threshold": "0.8"}
    # Without a run name, the execution's start time names the run
    request, problems = request_for(states, {"dataset_s3_uri": VALID_INPUT["dataset_s3_uri"]})
    assert problems == [] and request["job_name"] == "photo-labeler-20261125-101112"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"dataset_s3_uri": "s3://someone-elses-bucket/datasets/x/"}, "dataset_s3_uri must be a folder URI"),
        ({"dataset_s3_uri": f"s3://{BUCKET}/datasets/x"}, "dataset_s3_uri must be a folder URI ending in /"),
        ({"run_name": "bad_name!"}, "run_name must be letters, digits and single hyphens"),
        ({"run_name": "r" * 60}, "run_name is too long"),
        ({"min_accuracy": 0.5}, "min_accuracy may only raise the configured bar 0.9"),
        ({"instance_count": 9}, "instance_count must be an integer 1..4"),
        ({"hyperparameters": {"evaluate": "false"}}, "hyperparameters evaluate are set by the pipeline"),
        ({"hyperparameters": {"sagemaker_program": "x.py"}}, "hyperparameters sagemaker_program are set by"),
        ({"hyperparameters": {"confidence_threshold": 0.1}}, "hyperparameters confidence_threshold are set by"),
        ({"hyperparameters": {"lr": [1, 2]}}, "hyperparameter values must be strings, numbers or booleans: lr"),
        ({"base_model_s3_uri": "s3://elsewhere/w/"}, "base_model_s3_uri must be a folder URI ending in / under"),
        ({"datset_s3_uri": "typo"}, "unknown input key(s): datset_s3_uri"),
    ],
)
def test_a_bad_input_fails_before_training_with_a_cause_naming_the_problem(
    registry: Synthesized, overrides: dict[str, Any], expected: str
) -> None:
    states = definition(registry)["States"]
    # When an execution starts with a wrong field
    _request, problems = request_for(states, {**VALID_INPUT, **overrides})
    # Then ValidateRequest names it, RequestValid routes to the InvalidRequest Fail state, and nothing is trained
    assert any(expected in problem for problem in problems), problems
    choice = states["RequestValid"]
    assert evaluate(choice["Choices"][0]["Condition"], problems=problems) is True
    assert choice["Choices"][0]["Next"] == "InvalidRequest" and choice["Default"] == "Train"
    cause = evaluate(states["InvalidRequest"]["Cause"], problems=problems)
    assert cause.startswith("Nothing was started: ") and expected in cause


def test_a_non_object_input_is_rejected(registry: Synthesized) -> None:
    _request, problems = request_for(definition(registry)["States"], ["not", "an", "object"])
    assert "the execution input must be a JSON object" in problems


# --- evaluation and the accuracy gate -------------------------------------------------------------------------


def test_metrics_are_read_from_the_model_directory_the_job_wrote(registry: Synthesized) -> None:
    states = definition(registry)["States"]
    # Given SageMaker reports the uncompressed model prefix (with or without a trailing slash)
    for reported in (
        f"s3://{BUCKET}/models/photo-labeler-r1/output/model",
        f"s3://{BUCKET}/models/photo-labeler-r1/output/model/",
    ):
        result = {"ModelArtifacts": {"S3ModelArtifacts": reported}, "TrainingJobName": "photo-labeler-r1"}
        training = evaluate(states["Train"]["Assign"]["training"], states={"result": result})
        assert training["model_data_uri"] == f"s3://{BUCKET}/models/photo-labeler-r1/output/model/"
    # Then ReadMetrics fetches evaluation/metrics.json under it (evaluate.py's --output-dir in launch.py)
    read = states["ReadMetrics"]
    assert read["Resource"] == "arn:aws:states:::aws-sdk:s3:getObject"
    assert read["Arguments"]["Bucket"] == BUCKET
    key = evaluate(read["Arguments"]["Key"], training=training)
    assert key == "models/photo-labeler-r1/output/model/evaluation/metrics.json"
    body = json.dumps({"accuracy": 0.93, "macro_f1": 0.9, "invalid_answers": 1, "per_class": {}})
    metrics = evaluate(read["Assign"]["metrics"], states={"result": {"Body": body}})
    assert metrics == {"accuracy": 0.93, "macro_f1": 0.9, "invalid_answers": 1}
    # And a missing metrics.json stops the run with its own error
    assert read["Catch"][0]["Next"] == "NoEvaluation"


@pytest.mark.parametrize(("accuracy", "passes"), [(0.95, True), (0.9, True), (0.85, False), (None, False)])
def test_accuracy_gate_continues_only_at_or_above_the_bar(
    registry: Synthesized, accuracy: float | None, passes: bool
) -> None:
    states = definition(registry)["States"]
    gate = states["AccuracyGate"]
    metrics = {} if accuracy is None else {"accuracy": accuracy}
    result = evaluate(gate["Choices"][0]["Condition"], metrics=metrics, request={"min_accuracy": 0.9})
    assert bool(result) is passes
    assert gate["Choices"][0]["Next"] == "CheckEndpoint" and gate["Default"] == "BelowAccuracyBar"
    if not passes and accuracy is not None:
        cause = evaluate(
            states["BelowAccuracyBar"]["Cause"],
            metrics=metrics,
            request={"min_accuracy": 0.9},
            training={"model_data_uri": "s3://b/m/"},
        )
        assert cause == (
            "validation accuracy 0.85 is below the bar 0.9; the model stays at s3://b/m/ and is not registered or "
            "deployed"
        )


# --- rollout and registry -------------------------------------------------------------------------------------


def test_rollout_is_blue_green_with_auto_rollback_on_the_endpoints_alarms(registry: Synthesized) -> None:
    states = definition(registry)["States"]
    update = states["UpdateEndpoint"]
    assert update["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:updateEndpoint"
    arguments = update["Arguments"]
    assert arguments["EndpointName"] == "photo-labeler-llava"
    assert arguments["RetainAllVariantProperties"] is True
    policy = arguments["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    assert policy["TerminationWaitInSeconds"] == 900 and policy["MaximumExecutionTimeoutInSeconds"] == 10800
    # The rollback alarms exist and watch this endpoint's 5XX errors and model latency
    names = [a["AlarmName"] for a in arguments["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]]
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in registry.resources("AWS::CloudWatch::Alarm").values()
        if "AlarmName" in a["Properties"]
    }
    assert sorted(names) == ["photo-labeler-llava-rollout-5xx", "photo-labeler-llava-rollout-latency"]
    assert {alarms[n]["MetricName"] for n in names} == {"Invocation5XXErrors", "ModelLatency"}
    for name in names:
        assert {"Name": "EndpointName", "Value": "photo-labeler-llava"} in alarms[name]["Dimensions"]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "photo_labeler.endpoint.min_capacity": "2",
            "photo_labeler.endpoint.rollout_canary_percent": "50",
            "photo_labeler.endpoint.rollout_bake_seconds": "60",
        },
    ],
    ids=["defaults", "canary"],
)
def test_a_cdk_deploy_and_a_pipeline_rollout_use_the_same_deployment_config(
    synth_app: Callable[..., Synthesized], registry: Synthesized, overrides: dict[str, str]
) -> None:
    # Given the endpoint serves the registry, so both `cdk deploy` and the pipeline can change its model
    synthesized = synth_app({**REGISTRY, **overrides}) if overrides else registry
    pipeline = definition(synthesized)["States"]["UpdateEndpoint"]["Arguments"]["DeploymentConfig"]
    cloudformation = synthesized.only("AWS::SageMaker::Endpoint")["Properties"]["DeploymentConfig"]
    # Then both roll out blue/green the same way and roll back on the same alarms
    assert pipeline == cloudformation
    assert pipeline["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] == (60 if overrides else 900)
    # And the pipeline creates no alarms of its own: it names the endpoint's
    alarm_ids = synthesized.resources("AWS::CloudWatch::Alarm")
    assert [k for k in alarm_ids if "Rollout" in k] == [k for k in alarm_ids if k.startswith("InferenceRollout")]


def test_rollout_waits_until_in_service_and_registers_only_what_sagemaker_kept(registry: Synthesized) -> None:
    states = definition(registry)["States"]
    status = states["RolloutStatus"]
    training = {"job_name": "photo-labeler-r1"}

    def route(endpoint: dict[str, str]) -> str:
        for choice in status["Choices"]:
            if evaluate(choice["Condition"], states={"input": endpoint}, training=training):
                return choice["Next"]
        return status["Default"]

    assert route({"EndpointStatus": "Updating", "EndpointConfigName": "old"}) == "WaitForRollout"
    assert states["WaitForRollout"]["Next"] == "DescribeRollout"
    assert route({"EndpointStatus": "InService", "EndpointConfigName": "photo-labeler-r1"}) == "RegisterModel"
    assert route({"EndpointStatus": "InService", "EndpointConfigName": "old"}) == "RolledBack"
    assert route({"EndpointStatus": "Failed", "EndpointConfigName": "photo-labeler-r1"}) == "RolloutFailed"
    # The new model/config reproduce the CloudFormation endpoint with the pipeline's model directory
    model = states["CreateModel"]["Arguments"]
    cfn_model = registry.only("AWS::SageMaker::Model")["Properties"]
    assert model["EnableNetworkIsolation"] is True
    assert model["PrimaryContainer"]["Environment"] == cfn_model["PrimaryContainer"]["Environment"]
    assert model["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]["CompressionType"] == "None"
    (variant,) = states["CreateEndpointConfig"]["Arguments"]["ProductionVariants"]
    (cfn_variant,) = registry.only("AWS::SageMaker::EndpointConfig")["Properties"]["ProductionVariants"]
    assert {k: v for k, v in variant.items() if k != "ModelName"} == {
        k: v for k, v in cfn_variant.items() if k != "ModelName"
    }


def test_registry_is_written_last_with_the_model_uri_and_its_metrics(registry: Synthesized) -> None:
    states = definition(registry)["States"]
    register = states["RegisterModel"]
    assert register["Resource"] == "arn:aws:states:::aws-sdk:ssm:putParameter"
    arguments = register["Arguments"]
    assert arguments["Name"] == registry_parameter_name("photo-labeler") == "/photo-labeler/model/current"
    assert arguments["Overwrite"] is True and arguments["Type"] == "String"
    bound = {
        "training": {"model_data_uri": "s3://b/m/", "job_name": "photo-labeler-r1"},
        "metrics": {"accuracy": 0.93, "macro_f1": 0.91, "invalid_answers": 0},
        "request": {"run_name": "r1"},
        "states": {"context": {"Execution": {"Name": "exec-1"}}},
    }
    assert evaluate(arguments["Value"], **bound) == "s3://b/m/"
    assert evaluate(arguments["Description"], **bound) == (
        "run r1: accuracy 0.93, macro-F1 0.91, invalid answers 0, job photo-labeler-r1, execution exec-1"
    )
    assert register["Next"] == "Done"


def test_endpoint_serves_the_registry_value_resolved_at_deploy_time(registry: Synthesized) -> None:
    # Given training.serve_registered_model
    parameters = registry.json["Parameters"]
    (name,) = [n for n in parameters if n.startswith("RegisteredModelDataUri")]
    parameter = parameters[name]
    # Then the model URI is an SSM-typed parameter (re-read on every deploy; the CLI never skips the stack) ...
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert parameter["Default"] == "/photo-labeler/model/current"
    assert "[cdk:skip]" not in parameter["Description"]
    # ... and the model reads it, not a literal
    source = registry.only("AWS::SageMaker::Model")["Properties"]["PrimaryContainer"]["ModelDataSource"]
    assert source["S3DataSource"]["S3Uri"] == {"Ref": name}
    assert "s3://" not in json.dumps(registry.only("AWS::SageMaker::Model"))
    # And no resource of the stack owns the registry parameter (the pipeline creates and overwrites it)
    assert registry.resources("AWS::SSM::Parameter") == {}


def test_a_pinned_model_is_only_registered_never_rolled_out(with_model: Synthesized) -> None:
    states = definition(with_model)["States"]
    assert states["AccuracyGate"]["Choices"][0]["Next"] == "RegisterModel"
    assert not {"UpdateEndpoint", "CreateModel", "CreateEndpointConfig"} & set(states)
    source = with_model.only("AWS::SageMaker::Model")["Properties"]["PrimaryContainer"]["ModelDataSource"]
    assert source["S3DataSource"]["S3Uri"] == MODEL_URI
    assert "endpoint.model_data_uri pins" in states["Done"]["Output"]["next_step"]


def test_without_a_model_the_pipeline_deploys_and_registers_for_the_first_deploy(no_model: Synthesized) -> None:
    states = definition(no_model)["States"]
    assert states["AccuracyGate"]["Choices"][0]["Next"] == "RegisterModel"
    assert "UpdateEndpoint" not in states
    assert not [n for n in no_model.json.get("Parameters", {}) if n.startswith("RegisteredModelDataUri")]
    assert "serve_registered_model=true" in states["Done"]["Output"]["next_step"]


# --- security ----------------------------------------------------------------------------------------------------


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
    assert _render(training["Resource"]).endswith(":training-job/photo-labeler-*")
    (put,) = [s for s in statements if "ssm:putParameter" in actions(s)]
    assert _render(put["Resource"]) == "arn:aws:ssm:us-east-1:123456789012:parameter/photo-labeler/model/current"
    (update,) = [s for s in statements if "sagemaker:updateEndpoint" in actions(s)]
    assert sorted(_render(r) for r in update["Resource"]) == [
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/photo-labeler-*",
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint/photo-labeler-llava",
    ]


def _rollout_alarm_ids(synthesized: Synthesized) -> list[str]:
    return sorted(
        logical_id
        for logical_id, alarm in synthesized.resources("AWS::CloudWatch::Alarm").items()
        if alarm["Properties"].get("AlarmName", "").startswith("photo-labeler-llava-rollout-")
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
        _render(r) for s in writes for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
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
        if "cdk-hnb659fds-assets" in _render(resource)
    ]
    assert [a for a, _ in asset_reads] == [["s3:GetObject"]]
    assert not _render(asset_reads[0][1]).endswith("*")
    assert not [s for s in statements if any(a.endswith(":*") for a in actions(s))]


def test_cdk_nag_is_clean_when_the_pipeline_rolls_out(registry: Synthesized) -> None:
    assert [v.rule_name for v in AwsSolutionsChecks().validate_scope(registry.stack).violations] == []


# --- config validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"photo_labeler.training.instance_count": "0"}, "photo_labeler.training.instance_count"),
        ({"photo_labeler.training.image_version": '"9.9.9-pytorch9"'}, "photo_labeler.training.image_version"),
        ({"photo_labeler.training.max_wait_seconds": "7200"}, "photo_labeler.training.max_wait_seconds"),
        ({"photo_labeler.training.min_accuracy": "0"}, "photo_labeler.training.min_accuracy"),
        (
            {"photo_labeler.endpoint.rollout_timeout_seconds": "60"},
            "photo_labeler.endpoint.rollout_timeout_seconds",
        ),
        ({"photo_labeler.endpoint.rollout_canary_percent": "60"}, "photo_labeler.endpoint.rollout_canary_percent"),
        ({"photo_labeler.training.base_model_prefix": "weights/"}, "photo_labeler.training.base_model_prefix"),
        (
            {"photo_labeler.training.hyperparameters": '{"evaluate": "false"}'},
            "photo_labeler.training.hyperparameters.evaluate",
        ),
        ({"photo_labeler.training.instance_typo": "1"}, "photo_labeler.training.instance_typo"),
        (
            {**REGISTRY, "photo_labeler.endpoint.rollout_canary_percent": "25"},
            "photo_labeler.endpoint.rollout_canary_percent",
        ),
    ],
)
def test_config_errors_name_the_key(
    synth_app: Callable[..., Synthesized], overrides: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as error:
        synth_app(overrides)
    assert str(error.value).startswith(f"{key}: "), str(error.value)


# --- training image and code asset ------------------------------------------------------------------------------


def test_training_image_comes_from_the_regions_ecr_account() -> None:
    table = TrainingImageTable.load()
    assert table.uri("5.3.0-pytorch2.9.0", "us-east-1").startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/")
    assert table.uri("5.3.0-pytorch2.9.0", "ap-east-1").startswith("871362719292.dkr.ecr.ap-east-1.amazonaws.com/")
    assert ".amazonaws.com.cn/" in table.uri("5.3.0-pytorch2.9.0", "cn-north-1")
    with pytest.raises(UnsupportedTrainingImage, match="not published in region 'eu-central-2'"):
        table.uri("5.3.0-pytorch2.9.0", "eu-central-2")


def test_environment_agnostic_stack_maps_every_region_of_the_table(registry: Synthesized) -> None:
    (mapping,) = [m for n, m in registry.json["Mappings"].items() if "TrainingImageRegistry" in n]
    assert {r: e["account"] for r, e in mapping.items()} == TrainingImageTable.load().registries[
        "5.3.0-pytorch2.9.0"
    ]


def test_synth_uploads_the_tarball_itself_as_a_file_asset(tmp_path: Path) -> None:
    # Given a stack with the training code asset and bundling enabled (the stack fixtures skip bundling)
    app = cdk.App(outdir=str(tmp_path / "cdk.out"))
    stack = cdk.Stack(app, "Code")
    asset = training_code_asset(stack, "Code")
    # When it is synthesized
    app.synth()
    # Then the staged asset is one gzip'd tar (not a zip of a directory), exactly the reproducible archive
    manifest = json.loads((tmp_path / "cdk.out" / "Code.assets.json").read_text())
    (entry,) = [e for e in manifest["files"].values() if e["displayName"] == "Code"]
    assert entry["source"]["packaging"] == "file"
    staged = (tmp_path / "cdk.out" / entry["source"]["path"]).read_bytes()
    assert staged == build_archive(archive_members(), tmp_path / "expected.tar.gz").read_bytes()
    assert stack.resolve(asset.s3_object_key).endswith(".gz")


def test_code_archive_is_reproducible_and_holds_the_launcher_layout(tmp_path: Path) -> None:
    members = archive_members()
    first = build_archive(members, tmp_path / "a" / "sourcedir.tar.gz").read_bytes()
    second = build_archive(members, tmp_path / "b" / "sourcedir.tar.gz").read_bytes()
    assert first == second  # same inputs, same bytes: no spurious asset uploads
    with tarfile.open(tmp_path / "a" / "sourcedir.tar.gz") as archive:
        names = archive.getnames()
    assert {"requirements.txt", ENTRY_POINT, "training_job/train.py", "classification/contract.py"} <= set(names)
    assert "classification/taxonomy.json" in names and "training_job/configs/ds_zero3.json" in names
    # evaluate.py decodes as the endpoint does with its own module; nothing of the endpoint's model_code/ ships
    assert "training_job/constrained.py" in names
    assert not [n for n in names if n.startswith("model_code/")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
