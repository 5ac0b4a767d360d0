"""The rollout probe (stacks/training_pipeline/probe_steps.py): before UpdateEndpoint, the new model answers the
labeller's request on an endpoint of its own, or the rollout stops with the old model serving."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.stacks.conftest import Synthesized
from tests.stacks.training_pipeline.training_pipeline_testkit import (
    REGISTRY,
    actions,
    definition,
    evaluate,
    render,
    role_policy_statements,
    state_machine,
)

PROBE = "photo-labeler-probe"
PROBE_ARN = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{PROBE}"
PROBE_STATES = (
    "CreateProbeConfig",
    "CreateProbeEndpoint",
    "WaitForProbe",
    "DescribeProbe",
    "ProbeReady",
    "ProbeNewModel",
    "DeleteProbeEndpoint",
)


def _successors(state: dict[str, Any]) -> set[str]:
    found = {state["Next"]} if "Next" in state else set()
    found |= {choice["Next"] for choice in state.get("Choices", [])}
    found |= {state["Default"]} if "Default" in state else set()
    return found | {catch["Next"] for catch in state.get("Catch", [])}


def _reachable(states: dict[str, Any], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _successors(states[name])
    return seen


def test_traffic_shifts_only_after_the_probe_passed(registry: Synthesized) -> None:
    states = definition(registry)["States"]
    # The probe follows the rollout's endpoint config and is the only way into UpdateEndpoint
    assert states["CreateEndpointConfig"]["Next"] == "CreateProbeConfig"
    into_update = [name for name, state in states.items() if "UpdateEndpoint" in _successors(state)]
    assert into_update == ["DeleteProbeEndpoint"]
    assert [name for name, s in states.items() if "DeleteProbeEndpoint" in _successors(s)] == ["ProbeNewModel"]
    # Every failure inside the probe ends in a Fail state, never at UpdateEndpoint or RegisterModel: ProbeFailed
    # (after deleting the probe endpoint), or ProbeEndpointNotDeleted when that deletion itself failed
    for name in PROBE_STATES:
        for catch in states[name].get("Catch", []):
            reached = _reachable(states, catch["Next"])
            assert "UpdateEndpoint" not in reached and "RegisterModel" not in reached, name
            ends = {state for state in reached if states[state]["Type"] == "Fail"}
            expected = "ProbeEndpointNotDeleted" if name == "DeleteProbeEndpoint" else "ProbeFailed"
            assert ends == {expected}, name
    assert states["ProbeFailed"]["Type"] == "Fail" and states["ProbeFailed"]["Error"] == "ProbeFailed"
    # And a probe endpoint that is not InService (Failed) is deleted and reported too
    assert _reachable(states, states["ProbeReady"]["Default"]) >= {"DeleteProbeAfterFailure", "ProbeFailed"}


def test_the_probe_endpoint_is_the_rollouts_variant_on_one_instance_never_async(
    synth_app: Callable[..., Synthesized],
) -> None:
    for mode in ("realtime", "async"):
        states = definition(synth_app({**REGISTRY, "photo_labeler.endpoint.mode": mode}))["States"]
        rollout = states["CreateEndpointConfig"]["Arguments"]
        probe = states["CreateProbeConfig"]["Arguments"]
        (variant,) = rollout["ProductionVariants"]
        assert probe["ProductionVariants"] == [variant | {"InitialInstanceCount": 1}]
        # The probe waits for answers: InvokeEndpoint needs a real-time endpoint whatever endpoint.mode is
        assert "AsyncInferenceConfig" not in probe
        assert ("AsyncInferenceConfig" in rollout) is (mode == "async")
        # Its config name fits SageMaker's 63 characters for the longest job name
        assert evaluate(probe["EndpointConfigName"], training={"job_name": "j" * 63}) == "j" * 57 + "-probe"
        assert states["CreateProbeEndpoint"]["Arguments"] == {
            "EndpointName": PROBE,
            "EndpointConfigName": probe["EndpointConfigName"],
        }


def test_the_probe_invokes_its_function_retries_only_transient_faults_and_reports_the_reason(
    registry: Synthesized,
) -> None:
    states = definition(registry)["States"]
    invoke = states["ProbeNewModel"]
    assert invoke["Resource"] == "arn:aws:states:::lambda:invoke"
    assert invoke["Arguments"]["Payload"] == {"EndpointName": PROBE}
    retried = {error for retry in invoke["Retry"] for error in retry["ErrorEquals"]}
    assert "TransientFault" in retried and "ProbeFailed" not in retried and "States.ALL" not in retried
    # When the function raises ProbeFailed (Lambda reports it as JSON in the Cause), its message is kept
    (catch,) = invoke["Catch"]
    error = {
        "Error": "ProbeFailed",
        "Cause": json.dumps({"errorMessage": "the answer ' a pool' is free text", "errorType": "ProbeFailed"}),
    }
    probe_error = evaluate(catch["Assign"]["probe_error"], states={"errorOutput": error})
    assert probe_error == "the probe: the answer ' a pool' is free text"
    cause = evaluate(
        states["ProbeFailed"]["Cause"],
        training={"model_data_uri": "s3://b/models/run-9/model/"},
        probe_error=probe_error,
    )
    assert cause.startswith("the new model s3://b/models/run-9/model/ failed the probe before any traffic")
    assert "still serves the previous model" in cause and cause.endswith("is free text")
    # A SageMaker error (not JSON) is passed through as it came
    other = {"Error": "SageMaker.ValidationException", "Cause": "Could not find endpoint"}
    create = states["CreateProbeEndpoint"]["Catch"][0]["Assign"]["probe_error"]
    assert evaluate(create, states={"errorOutput": other}).endswith(": Could not find endpoint")


def test_the_probe_function_is_the_labellers_code_and_may_invoke_the_probe_endpoint_only(
    registry: Synthesized,
) -> None:
    functions = registry.resources("AWS::Lambda::Function")
    (probe_id,) = [
        lid for lid, f in functions.items() if f["Properties"]["Handler"] == "probe_handler.lambda_handler"
    ]
    (labeller,) = [f for f in functions.values() if f["Properties"]["Handler"] == "handler.lambda_handler"]
    probe = functions[probe_id]["Properties"]
    assert probe["Code"] == labeller["Properties"]["Code"]  # one asset: the same contract, the same request
    assert probe["Environment"]["Variables"]["TAXONOMY_FILE"] == "classification/taxonomy.json"
    statements = role_policy_statements(registry, "TrainingPipelineProbeRole")
    granted = {action: render(s["Resource"]) for s in statements for action in actions(s)}
    assert granted.keys() == {"sagemaker:InvokeEndpoint", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert granted["sagemaker:InvokeEndpoint"] == PROBE_ARN
    # And the state machine may create, watch and delete exactly that endpoint, and invoke exactly that function
    machine = role_policy_statements(registry, "TrainingPipelineStateMachineRole")
    for action in ("sagemaker:createEndpoint", "sagemaker:deleteEndpoint"):
        (statement,) = [s for s in machine if action in actions(s)]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        endpoints = [render(r) for r in resources if ":endpoint/" in render(r)]
        assert endpoints == [PROBE_ARN], action
    # The probe endpoint runs the new model with the endpoint's execution role: its containers may log there
    model_role = role_policy_statements(registry, "InferenceExecutionRole")
    (logs,) = [s for s in model_role if "logs:PutLogEvents" in actions(s)]
    assert f"log-group:/aws/sagemaker/Endpoints/{PROBE}:*" in json.dumps([render(r) for r in logs["Resource"]])
    (invoke,) = [s for s in machine if "lambda:InvokeFunction" in actions(s)]
    assert {
        r["Fn::GetAtt"][0] if "Fn::GetAtt" in r else r["Fn::Join"][1][0]["Fn::GetAtt"][0]
        for r in invoke["Resource"]
    } == {probe_id}


def test_the_state_machine_budget_covers_the_probe(registry: Synthesized, with_model: Synthesized) -> None:
    # The rollout's timeout (10800 s) plus the probe's: the model's download and startup limits and 15 minutes
    rollout = definition(registry)["TimeoutSeconds"] - definition(with_model)["TimeoutSeconds"]
    assert rollout == 10800 + 1200 + 1800 + 900
    assert state_machine(with_model)  # a pinned model: the pipeline never rolls out, so no probe either
    assert "ProbeNewModel" not in definition(with_model)["States"]
    assert not [
        f for f in with_model.resources("AWS::Lambda::Function").values() if "probe" in f["Properties"]["Handler"]
    ]
