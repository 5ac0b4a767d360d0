"""The training pipeline's rollout and model registry (stacks/training_pipeline/rollout_steps.py): blue/green with
auto-rollback, the same DeploymentConfig as `cdk deploy`, and the registry written only for what SageMaker kept."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stacks.storage.model_store import registry_parameter_name
from tests.stacks.conftest import MODEL_URI, Synthesized
from tests.stacks.training_pipeline.training_pipeline_testkit import (
    REGISTRY,
    definition,
    evaluate,
    render,
)

ENDPOINT = "photo-labeler-llava-realtime-g5-xlarge"


def test_rollout_is_blue_green_with_auto_rollback_on_the_endpoints_alarms(registry: Synthesized) -> None:
    states = definition(registry)["States"]
    update = states["UpdateEndpoint"]
    assert update["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:updateEndpoint"
    arguments = update["Arguments"]
    assert arguments["EndpointName"] == ENDPOINT
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
    assert sorted(names) == [
        "photo-labeler-llava-realtime-g5-xlarge-rollout-5xx",
        "photo-labeler-llava-realtime-g5-xlarge-rollout-latency",
    ]
    assert {alarms[n]["MetricName"] for n in names} == {"Invocation5XXErrors", "ModelLatency"}
    for name in names:
        assert {"Name": "EndpointName", "Value": "photo-labeler-llava-realtime-g5-xlarge"} in alarms[name][
            "Dimensions"
        ]


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


def _rendered(node: Any) -> Any:
    """A template value with its intrinsics rendered as the pipeline's definition renders them."""
    if isinstance(node, dict) and len(node) == 1 and next(iter(node)).startswith(("Ref", "Fn::")):
        return render(node)
    if isinstance(node, dict):
        return {key: _rendered(value) for key, value in node.items()}
    return [_rendered(item) for item in node] if isinstance(node, list) else node


def test_an_async_endpoint_serving_the_registry_rolls_out_with_its_async_config(
    synth_app: Callable[..., Synthesized],
) -> None:
    # Given endpoint.mode async with the registry (synth stopped with a bare ValueError: the rollout could not
    # reproduce AsyncInferenceConfig)
    synthesized = synth_app({**REGISTRY, "photo_labeler.endpoint.mode": "async"})
    created = definition(synthesized)["States"]["CreateEndpointConfig"]["Arguments"]
    stack_config = synthesized.only("AWS::SageMaker::EndpointConfig")["Properties"]
    # Then the rollout's endpoint config is the stack's: same variant, same queue size, bucket, key and topics,
    # so the new fleet answers through the same notification path and UpdateEndpoint keeps the endpoint async
    assert created["AsyncInferenceConfig"] == _rendered(stack_config["AsyncInferenceConfig"])
    assert created["AsyncInferenceConfig"]["OutputConfig"]["NotificationConfig"] == {
        "SuccessTopic": "REF-AsyncInferenceSuccessTopic9FEFBC8A",
        "ErrorTopic": "REF-AsyncInferenceErrorTopic40457A9F",
    }
    (variant,) = created["ProductionVariants"]
    assert variant["InstanceType"] == stack_config["ProductionVariants"][0]["InstanceType"]
    # And a real-time endpoint's rollout sends none
    assert (
        "AsyncInferenceConfig"
        not in definition(synth_app(REGISTRY))["States"]["CreateEndpointConfig"]["Arguments"]
    )


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
