"""Each Step Functions task's role holds every action AWS documents for that service integration.

Hand-written policies may narrow resources, but a dropped action fails only at run time (a training run that cannot
tag its job, a rollout that cannot pass its role). The table below is what AWS documents per integration; the test
walks every Task (and Distributed Map) of every state machine of every config variant, looks its integration up
(an unknown one fails: add it to the table with its source), and compares with the actions the state machine's
role is allowed (wildcards honoured, resources not compared).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Any

import pytest

from tests.stacks.conftest import VARIANTS, Synthesized
from tests.stacks.test_state_machines import definitions

SAGEMAKER_DOC = "https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html"
SDK_DOC = "https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html"
LAMBDA_DOC = "https://docs.aws.amazon.com/step-functions/latest/dg/lambda-iam.html"
MAP_DOC = "https://docs.aws.amazon.com/step-functions/latest/dg/iam-policies-eg-dist-map.html"
CDK_32294 = "https://github.com/aws/aws-cdk/issues/32294 (fixed by https://github.com/aws/aws-cdk/pull/32536)"

# Integration (the Resource after `arn:aws:states:::`, or a marker) → (required actions, source).
REQUIRED_ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    # "CreateTrainingJob, Static resources, Run a Job (.sync)"; Step Functions also tags the jobs it starts with
    # .sync (MANAGED_BY_AWS), which needs AddTags: aws-cdk's L2 task grants both since PR 32536.
    "sagemaker:createTrainingJob.sync": (
        frozenset(
            {
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:ListTags",
                "sagemaker:AddTags",
                "iam:PassRole",
                "events:PutTargets",
                "events:PutRule",
                "events:DescribeRule",
            }
        ),
        f"{SAGEMAKER_DOC} ; {CDK_32294}",
    ),
    # "CreateModel": the model's execution role is passed to SageMaker.
    "aws-sdk:sagemaker:createModel": (frozenset({"sagemaker:CreateModel", "iam:PassRole"}), SAGEMAKER_DOC),
    "aws-sdk:sagemaker:createEndpointConfig": (frozenset({"sagemaker:CreateEndpointConfig"}), SAGEMAKER_DOC),
    "aws-sdk:sagemaker:updateEndpoint": (frozenset({"sagemaker:UpdateEndpoint"}), SAGEMAKER_DOC),
    # The rollout probe's own endpoint (stacks/training_pipeline/probe_steps.py).
    "aws-sdk:sagemaker:createEndpoint": (frozenset({"sagemaker:CreateEndpoint"}), SAGEMAKER_DOC),
    "aws-sdk:sagemaker:deleteEndpoint": (frozenset({"sagemaker:DeleteEndpoint"}), SDK_DOC),
    # AWS SDK integrations: "the IAM action is the service's API action" (service:Action).
    "aws-sdk:sagemaker:describeEndpoint": (frozenset({"sagemaker:DescribeEndpoint"}), SDK_DOC),
    "aws-sdk:ssm:putParameter": (frozenset({"ssm:PutParameter"}), SDK_DOC),
    "aws-sdk:s3:getObject": (frozenset({"s3:GetObject"}), SDK_DOC),
    "aws-sdk:sfn:describeMapRun": (frozenset({"states:DescribeMapRun"}), SDK_DOC),
    "aws-sdk:sfn:listExecutions": (frozenset({"states:ListExecutions"}), SDK_DOC),
    "aws-sdk:sagemaker:describeTrainingJob": (frozenset({"sagemaker:DescribeTrainingJob"}), SDK_DOC),
    "aws-sdk:ssm:getParameter": (frozenset({"ssm:GetParameter"}), SDK_DOC),
    # A Task whose Resource is the function's ARN, or the optimised lambda:invoke.
    "lambda:invoke": (frozenset({"lambda:InvokeFunction"}), LAMBDA_DOC),
    # "Example of IAM policy for running a Distributed Map state" (child executions) and its item readers / writer.
    "map:distributed": (
        frozenset({"states:StartExecution", "states:DescribeExecution", "states:StopExecution"}),
        MAP_DOC,
    ),
    "map:reader:s3:listObjectsV2": (frozenset({"s3:ListBucket"}), MAP_DOC),
    "map:reader:s3:getObject": (frozenset({"s3:GetObject"}), MAP_DOC),
    "map:writer:s3:putObject": (frozenset({"s3:PutObject"}), MAP_DOC),
}


def integration(resource: str) -> str:
    if resource.startswith("arn:aws:lambda:"):
        return "lambda:invoke"
    return resource.split(":states:::", 1)[1] if ":states:::" in resource else resource


def integrations(states: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(state name, integration key) for every Task and Distributed Map, nested maps included."""
    for name, state in states.items():
        if state["Type"] == "Task":
            yield name, integration(state["Resource"])
        elif state["Type"] == "Map":
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor.get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED":
                yield name, "map:distributed"
            if "ItemReader" in state:
                yield name, f"map:reader:{integration(state['ItemReader']['Resource'])}"
            if "ResultWriter" in state:
                yield name, f"map:writer:{integration(state['ResultWriter']['Resource'])}"
            yield from integrations(processor["States"])
        elif state["Type"] == "Parallel":
            for branch in state["Branches"]:
                yield from integrations(branch["States"])


def allowed_actions(synthesized: Synthesized, role_logical_id: str) -> set[str]:
    actions: set[str] = set()
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} not in policy["Properties"].get("Roles", []):
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                found = statement["Action"]
                actions.update([found] if isinstance(found, str) else found)
    return actions


def missing_actions(synthesized: Synthesized) -> dict[str, list[str]]:
    """`machine/state (integration)` → required actions its role is not allowed."""
    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
    missing: dict[str, list[str]] = {}
    for machine, definition in definitions(synthesized).items():
        role = machines[machine]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        allowed = allowed_actions(synthesized, role)
        for state, key in integrations(definition["States"]):
            assert key in REQUIRED_ACTIONS, (
                f"{machine}/{state}: integration {key!r} has no row in REQUIRED_ACTIONS"
            )
            required, _source = REQUIRED_ACTIONS[key]
            # IAM matches action names case-insensitively (CDK's CallAwsService writes `ssm:putParameter`)
            absent = sorted(
                a for a in required if not any(fnmatch.fnmatchcase(a.lower(), p.lower()) for p in allowed)
            )
            if absent:
                missing[f"{machine}/{state} ({key})"] = absent
    return missing


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_task_role_holds_the_actions_aws_documents_for_its_integration(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synthesized: Synthesized = request.getfixturevalue(variant)
    assert missing_actions(synthesized) == {}


def test_the_variants_exercise_every_row_of_the_table(request: pytest.FixtureRequest) -> None:
    # A row no variant reaches checks nothing: every documented integration is used by some variant
    used = {
        key
        for variant in VARIANTS
        for definition in definitions(request.getfixturevalue(variant)).values()
        for _state, key in integrations(definition["States"])
    }
    assert set(REQUIRED_ACTIONS) - used == set()


def test_negative_control_a_dropped_action_is_reported(with_model: Synthesized) -> None:
    # Given the training role's policy without sagemaker:ListTags
    template = with_model.json
    for policy in template["Resources"].values():
        if policy["Type"] != "AWS::IAM::Policy":
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if isinstance(statement["Action"], list) and "sagemaker:ListTags" in statement["Action"]:
                statement["Action"] = [a for a in statement["Action"] if a != "sagemaker:ListTags"]
            elif statement["Action"] == "sagemaker:ListTags":
                statement["Action"] = "sagemaker:DescribeTrainingJob"
    doctored = Synthesized(app=with_model.app, stack=with_model.stack, template=_FrozenTemplate(template))
    # Then the Train state is reported
    assert any("sagemaker:ListTags" in absent for absent in missing_actions(doctored).values())


class _FrozenTemplate:
    """A Template stand-in over an edited template dict (find_resources and to_json only)."""

    def __init__(self, template: dict[str, Any]) -> None:
        self._template = template

    def to_json(self) -> dict[str, Any]:
        return self._template

    def find_resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self._template["Resources"].items() if v["Type"] == type_name}
