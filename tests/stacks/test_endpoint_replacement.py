"""Endpoint changes SageMaker refuses in place become a replacement within one deploy; the rest stay in place.

What SageMaker will not update in place, from its own words:
- the instance type of a variant that autoscaling targets, and removing such a variant: "If the update would change
  the instance type for any model that is a target for auto scaling, the update fails" (SageMaker Developer Guide,
  "Update endpoints that use auto scaling"); the stack autoscales every variant (real-time and async);
- adding or removing AsyncInferenceConfig: UpdateEndpoint answers "The AsyncInferenceConfig parameter cannot be
  removed from this endpoint ... To change the endpoint type, create a new endpoint" (quoted in
  aws/sagemaker-python-sdk PR #3124);
- a different variant name: "your new endpoint configuration must have the same variant name as the old endpoint
  configuration" (SageMaker Developer Guide, "Deployment guardrails: Exclusions").
With a fixed EndpointName CloudFormation turns each into an UpdateEndpoint that fails and rolls the stack back.
EndpointName is create-only in AWS::SageMaker::Endpoint (its CloudFormation resource schema, read below from the
copy cfn-lint ships), so an endpoint whose name follows those properties is replaced instead. Which endpoint
configs SageMaker would refuse is read from the two templates, so every `endpoint.mode` value
(stacks.config.ENDPOINT_MODES) is covered as it is added.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cfnlint
import pytest

from stacks.config import ENDPOINT_MODES, AppConfig, ConfigError
from tests.stacks.conftest import MODEL_URI, Synthesized

SCHEMAS = Path(cfnlint.__file__).parent / "data" / "schemas"


def _create_only(type_name: str) -> set[str]:
    """The create-only properties of a resource type: a change to one makes CloudFormation replace it."""
    digest = json.loads((SCHEMAS / "providers" / "us-east-1.json").read_text())[type_name]
    schema = json.loads((SCHEMAS / "resources" / f"{digest}.json").read_text())
    return {path.removeprefix("/properties/") for path in schema.get("createOnlyProperties", [])}


def _settings(mode: str, **endpoint: str) -> dict[str, str]:
    # The endpoint serves the registry, so the training pipeline rolls out to it and must follow it too.
    overrides = {"photo_labeler.training.serve_registered_model": "true", "photo_labeler.endpoint.mode": mode}
    return overrides | {f"photo_labeler.endpoint.{key}": value for key, value in endpoint.items()}


def _refused_in_place(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What SageMaker's UpdateEndpoint would refuse about the new endpoint config (the module docstring)."""
    reasons = []
    if ("AsyncInferenceConfig" in before) != ("AsyncInferenceConfig" in after):
        reasons.append("AsyncInferenceConfig added or removed")
    variants = [{v["VariantName"]: v["InstanceType"] for v in c["ProductionVariants"]} for c in (before, after)]
    if set(variants[0]) != set(variants[1]):
        reasons.append("variant renamed or removed")
    elif any(variants[0][name] != variants[1][name] for name in variants[0]):
        reasons.append("instance type of an autoscaled variant")
    return reasons


def _endpoint(synthesized: Synthesized) -> tuple[str, dict[str, Any]] | None:
    endpoints = synthesized.resources("AWS::SageMaker::Endpoint")
    if not endpoints:
        return None  # a mode without an endpoint: the change removes or adds one, nothing is updated
    (name,) = [e["Properties"]["EndpointName"] for e in endpoints.values()]
    return name, synthesized.only("AWS::SageMaker::EndpointConfig")["Properties"]


def _names_endpoint(resources: Mapping[str, Any], synthesized: Synthesized, name: str) -> bool:
    """Whether the resources name the endpoint: literally, or by a Ref / Fn::GetAtt of it."""
    (logical_id,) = synthesized.resources("AWS::SageMaker::Endpoint")
    text = json.dumps(resources)
    return name in text or f'"Ref": "{logical_id}"' in text or f'["{logical_id}", "EndpointName"]' in text


MODE_PAIRS = list(itertools.permutations(ENDPOINT_MODES, 2))
IN_PLACE: dict[str, Callable[[str], dict[str, str]]] = {
    "model": lambda mode: {"model_data_uri": MODEL_URI},
    "capacity": lambda mode: {"max_capacity": "6"},
    "rollout": lambda mode: {"rollout_bake_seconds": "300"},
    "startup timeout": lambda mode: {"container_startup_timeout_seconds": "1500"},
}


def test_endpoint_name_is_a_create_only_property() -> None:
    # The premise: a new EndpointName is a new endpoint, never an UpdateEndpoint
    assert "EndpointName" in _create_only("AWS::SageMaker::Endpoint")


@pytest.mark.parametrize(("before_mode", "after_mode"), MODE_PAIRS, ids=[f"{a}-to-{b}" for a, b in MODE_PAIRS])
def test_switching_endpoint_mode_replaces_the_endpoint(
    before_mode: str, after_mode: str, synth_app: Callable[..., Synthesized]
) -> None:
    before, after = synth_app(_settings(before_mode)), synth_app(_settings(after_mode))
    _assert_replaced_and_followed(before, after)


@pytest.mark.parametrize("mode", ENDPOINT_MODES)
def test_changing_the_instance_type_of_the_autoscaled_variant_replaces_the_endpoint(
    mode: str, synth_app: Callable[..., Synthesized]
) -> None:
    before = synth_app(_settings(mode))
    after = synth_app(_settings(mode, instance_type="ml.g5.2xlarge"))
    if _endpoint(before) is None:  # a mode without an endpoint (scheduled): nothing for SageMaker to refuse
        assert _endpoint(after) is None
        return
    assert after.resources("AWS::ApplicationAutoScaling::ScalableTarget")  # the variant is autoscaled
    _assert_replaced_and_followed(before, after)


@pytest.mark.parametrize("change", sorted(IN_PLACE))
@pytest.mark.parametrize("mode", ENDPOINT_MODES)
def test_changes_sagemaker_applies_in_place_keep_the_endpoint(
    mode: str, change: str, synth_app: Callable[..., Synthesized]
) -> None:
    # A new model, capacity, rollout or timeout is a blue/green UpdateEndpoint of the same endpoint
    before = synth_app(_settings(mode))
    after = synth_app(_settings(mode, **IN_PLACE[change](mode)))
    old, new = _endpoint(before), _endpoint(after)
    if old is None:  # a mode without an endpoint (scheduled)
        assert new is None
        return
    assert new is not None
    assert _refused_in_place(old[1], new[1]) == []
    assert old[0] == new[0]


def _assert_replaced_and_followed(before: Synthesized, after: Synthesized) -> None:
    old, new = _endpoint(before), _endpoint(after)
    if old is None or new is None:
        return  # one side has no endpoint: CloudFormation creates or deletes it, nothing to update
    assert _refused_in_place(old[1], new[1]), "the pair does not exercise a change SageMaker refuses"
    # Then the endpoint gets a new name, so CloudFormation creates a new endpoint instead of updating it
    assert old[0] != new[0]
    # And everything that names the endpoint follows in the same template: nothing still names the old one
    text = json.dumps(after.json)
    assert old[0] not in text
    followers = {
        "labeller environment": after.resources("AWS::Lambda::Function"),
        "scaling target": after.resources("AWS::ApplicationAutoScaling::ScalableTarget"),
        "alarms": after.resources("AWS::CloudWatch::Alarm"),
        "dashboard": after.resources("AWS::CloudWatch::Dashboard"),
        "training pipeline": after.resources("AWS::StepFunctions::StateMachine"),
        "endpoint role": after.resources("AWS::IAM::Policy"),
    }
    missing = [what for what, resources in followers.items() if not _names_endpoint(resources, after, new[0])]
    assert missing == []


def test_the_name_carries_mode_and_instance_type_and_is_refused_when_too_long() -> None:
    config = AppConfig.from_context({"endpoint": {"mode": "async", "instance_type": "ml.g6e.12xlarge"}})
    assert config.endpoint_name == "photo-labeler-llava-async-g6e-12xlarge"
    # SageMaker's EndpointName limit is 63 characters: a long prefix is refused at synth, naming the result
    with pytest.raises(ConfigError) as caught:
        AppConfig.from_context(
            {
                "name_prefix": "a" * 24,
                "endpoint": {"mode": "realtime", "instance_type": "ml.g7futurefamily.192xlarge"},
            }
        )
    assert caught.value.key == "photo_labeler.name_prefix"
    assert "longer than SageMaker's 63 characters" in str(caught.value)
