"""Gate: every combination of the configuration axes synthesises clean, or is refused with a one-line ConfigError.

The axes are the switches that change which resources and state machines exist: endpoint mode (every value of
stacks.config.ENDPOINT_MODES, so a new mode joins the matrix by itself) x where the model comes from x canary x
review page / WAF x scoped backfill x pinned region. "Clean" is what a deploy needs: cdk-nag finds nothing
unacknowledged, every delivery the template wires is allowed where it lands (tests/stacks/resource_policies.py),
cfn-lint reports no error and every state machine is valid Amazon States Language (the real validator). Anything
else that stops synth (a ValueError, a KeyError, a jsii error) is a failure: a user must get one line naming the
key to change, never a traceback.

Cost: every combination is synthesised once per module, in-process (~0.7 s each after the jsii warm-up); cfn-lint
runs once, over the few templates that together hold every distinct resource (`covering`), and the ASL validator
once, over every distinct definition. The measured time is in docs/deploy-checks.md.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cdk_nag import AwsSolutionsChecks

from stacks.config import ENDPOINT_MODES, ConfigError
from tests.stacks.conftest import MODEL_URI, SCOPED_BACKFILL, synth
from tests.stacks.intrinsics import resolve
from tests.stacks.resource_policies import problems
from tests.stacks.test_state_machines import VALIDATOR, validate

PINNED = {"photo_labeler.region": "us-east-1", "photo_labeler.account": "123456789012"}
AXES: dict[str, dict[str, dict[str, str]]] = {
    "mode": {mode: {"photo_labeler.endpoint.mode": mode} for mode in ENDPOINT_MODES},
    "model": {
        "none": {},
        "pinned": {"photo_labeler.endpoint.model_data_uri": MODEL_URI},
        "registry": {"photo_labeler.training.serve_registered_model": "true"},
    },
    "canary": {
        "off": {},
        "on": {"photo_labeler.endpoint.min_capacity": "2", "photo_labeler.endpoint.rollout_canary_percent": "25"},
    },
    "review": {
        "off": {"photo_labeler.review.enabled": "false"},
        "on": {},
        "waf": {"photo_labeler.review.waf": "true"},
    },
    "backfill": {
        "all": {},
        "scoped": {k: v for k, v in SCOPED_BACKFILL.items() if k.startswith("photo_labeler.backfill.")},
    },
    "region": {"unpinned": {}, "pinned": PINNED},
}
COMBINATIONS: list[dict[str, str]] = [
    dict(zip(AXES, values, strict=True)) for values in itertools.product(*AXES.values())
]


def refused_by_rule(combination: Mapping[str, str]) -> str | None:
    """The key a combination must be refused on, and why (each rule is held by its own test too)."""
    if combination["review"] == "waf" and combination["region"] != "pinned":
        return "photo_labeler.review.waf"  # a CLOUDFRONT web ACL exists only in us-east-1 (test_config.py)
    return None


def overrides(combination: Mapping[str, str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for axis, value in combination.items():
        merged |= AXES[axis][value]
    return merged


def label(combination: Mapping[str, str]) -> str:
    return " ".join(f"{axis}={value}" for axis, value in combination.items())


@dataclass(frozen=True)
class Outcome:
    combination: Mapping[str, str]
    template: dict[str, Any] | None = None
    refusal: str | None = None  # the ConfigError line
    failure: str | None = None  # anything a deploy would trip on, or a traceback


def outcome(combination: Mapping[str, str]) -> Outcome:
    """Synthesise one combination as app.py does and judge it (cfn-lint and ASL run on all templates at once)."""
    try:
        synthesized = synth(overrides(combination))
    except ConfigError as error:
        message = str(error)
        if "\n" in message or not message.startswith("photo_labeler."):
            return Outcome(combination, failure=f"a ConfigError that is not one line naming its key: {message!r}")
        return Outcome(combination, refusal=message)
    except Exception as error:  # what this gate exists for: a traceback instead of a message
        return Outcome(combination, failure="".join(traceback.format_exception_only(error)).strip())
    findings = [v.rule_name for v in AwsSolutionsChecks().validate_scope(synthesized.stack).violations]
    refused = problems(synthesized.json, synthesized.region)
    failure = "; ".join([f"cdk-nag: {', '.join(findings)}"] * bool(findings) + refused[:3]) or None
    return Outcome(combination, template=synthesized.json, failure=failure)


@pytest.fixture(scope="module")
def matrix() -> list[Outcome]:
    return [outcome(combination) for combination in COMBINATIONS]


@pytest.mark.slow
def test_every_combination_synthesises_clean_or_is_refused_in_one_line(matrix: list[Outcome]) -> None:
    failures = [f"{label(o.combination)}: {o.failure}" for o in matrix if o.failure]
    assert failures == [], "\n".join(failures)
    # And exactly the combinations a documented rule refuses are refused, on that rule's key
    refused = {label(o.combination): (o.refusal or "").split(":")[0] for o in matrix if o.refusal}
    expected = {label(c): key for c in COMBINATIONS if (key := refused_by_rule(c))}
    assert refused == expected
    assert len(matrix) - len(refused) > len(refused)  # the matrix mostly synthesises


def _parts(template: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    sections = ("Parameters", "Mappings", "Conditions", "Rules", "Resources", "Outputs")
    return {(s, name, json.dumps(v, sort_keys=True)) for s in sections for name, v in template.get(s, {}).items()}


def covering(templates: list[Mapping[str, Any]]) -> list[int]:
    """Indexes of a few templates that hold every distinct resource, output, condition... of all of them.

    cfn-lint checks each resource against its schema and its references to others (by logical id, which CDK keeps
    stable); a template all of whose parts already occur, identical, in linted templates adds nothing to lint.
    Greedy set cover (with two modes it kept 20 of 120 templates: a sixth of cfn-lint's time).
    """
    parts = [_parts(template) for template in templates]
    seen: set[tuple[str, str, str]] = set()
    chosen: list[int] = []
    while True:
        best = max(range(len(parts)), key=lambda i: len(parts[i] - seen))
        if not parts[best] - seen:
            return chosen
        chosen.append(best)
        seen |= parts[best]


@pytest.mark.slow
def test_cfn_lint_reports_no_error_in_any_combination(matrix: list[Outcome], tmp_path: Path) -> None:
    synthesised = [o for o in matrix if o.template is not None]
    files = {}
    for index in covering([o.template or {} for o in synthesised]):
        path = tmp_path / f"combination-{index:03d}.json"
        path.write_text(json.dumps(synthesised[index].template))
        files[path.name] = label(synthesised[index].combination)
    # One cfn-lint process for all of them: loading its schemas dominates a single run.
    linter = Path(sys.executable).parent / "cfn-lint"
    run = subprocess.run(
        [str(linter), "--format", "parseable", *(str(tmp_path / name) for name in files)],
        capture_output=True,
        text=True,
        check=False,
    )
    # Exit code bits: 1 fatal, 2 errors, 4 warnings, 8 informational (docs/security.md lists the accepted warnings)
    errors = [line for line in run.stdout.splitlines() if re.search(r":E\d{4}:", line)]
    named = [f"{files[Path(line.split(':', 1)[0]).name]}: {line.split(':', 5)[-1]}" for line in errors]
    assert run.returncode & ~(4 | 8) == 0 and named == [], "\n".join(named) or run.stderr[-2000:]


def test_the_covering_templates_hold_every_part_of_every_template() -> None:
    # Given three templates that share resources
    a = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    b = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}, "Topic": {"Type": "AWS::SNS::Topic"}}}
    c = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"DelaySeconds": 1}}}}
    # Then the cover keeps b (it holds a) and c (its queue differs), and drops a
    assert sorted(covering([a, b, c])) == [1, 2]


@pytest.mark.slow
def test_every_state_machine_of_every_combination_is_valid_states_language(
    matrix: list[Outcome], tmp_path: Path
) -> None:
    if not VALIDATOR.exists():
        pytest.fail(f"{VALIDATOR} missing: run `make setup`")
    named: dict[str, dict[str, Any]] = {}
    for index, result in enumerate(o for o in matrix if o.template is not None):
        template = result.template or {}
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::StepFunctions::StateMachine":
                definition = json.loads(resolve(resource["Properties"]["DefinitionString"], template))
                if definition not in named.values():  # most combinations share most definitions
                    named[f"{index:03d}-{logical_id}"] = definition
    # Distinct definitions: the training pipeline's differ with the rollout (registry, canary, mode), the
    # backfill's with the scope; each is validated once
    assert len(named) >= 2 * len(ENDPOINT_MODES)
    paths = []
    for name, definition in named.items():
        paths += ["--json-path", str(tmp_path / f"{name}.asl.json")]
        (tmp_path / f"{name}.asl.json").write_text(json.dumps(definition))
    # One validator process for all; only when it refuses one are they run one by one, to name it.
    batch = subprocess.run([str(VALIDATOR), "--silent", *paths], capture_output=True, text=True, check=False)
    if batch.returncode != 0:
        assert validate(named, tmp_path) == {}


@pytest.mark.slow
def test_negative_control_a_crash_in_a_construct_is_a_failure_not_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the crash this gate was written for: the rollout refusing to copy an endpoint config field
    from stacks.training_pipeline import rollout_steps

    crash = "the training pipeline cannot reproduce EndpointConfig.async_inference_config"

    def cannot_copy(self: object) -> dict[str, Any]:
        raise ValueError(crash)

    monkeypatch.setattr(rollout_steps.RolloutTarget, "production_variant", cannot_copy)
    combination = dict(COMBINATIONS[0]) | {"model": "registry", "review": "off"}
    # When the gate judges that combination
    result = outcome(combination)
    # Then it is a failure naming the error, not a refusal and not a template
    assert result.refusal is None and result.template is None
    assert (
        result.failure
        == "ValueError: the training pipeline cannot reproduce EndpointConfig.async_inference_config"
    )
