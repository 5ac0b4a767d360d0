"""Reading the training pipeline out of a synthesized template: its state machine, JSONata and IAM.

The expressions that decide something are evaluated with a JSONata engine, as Step Functions would, so the tests
check what Step Functions will run, not a copy of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonata

from tests.stacks.conftest import Synthesized

BUCKET = "training-bucket"  # what the training bucket's Ref renders to in these tests
STATE_MACHINE_NAME = "photo-labeler-training"
REGISTRY = {"photo_labeler.training.serve_registered_model": "true"}
START = "2026-11-25T10:11:12.345Z"


def render(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return ",".join(render(item) for item in node)
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
        return argument[0].join(render(part) for part in argument[1])
    if function == "Fn::Select":  # the ECR grant's account: Fn::Select 0 of Fn::Split "." of the image URI
        index, (split,) = argument[0], argument[1].values()
        return render(split[1]).split(split[0])[index]
    raise AssertionError(f"unexpected token {node!r}")


def state_machine(synthesized: Synthesized) -> dict[str, Any]:
    (machine,) = [
        r
        for r in synthesized.resources("AWS::StepFunctions::StateMachine").values()
        if r["Properties"].get("StateMachineName") == STATE_MACHINE_NAME
    ]
    return machine


def definition(synthesized: Synthesized) -> dict[str, Any]:
    return json.loads(render(state_machine(synthesized)["Properties"]["DefinitionString"]))


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
