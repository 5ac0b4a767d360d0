"""Every state machine of every config variant is valid Amazon States Language, checked by a real validator.

The definitions are `Fn::Join` strings that cfn-lint and cdk-nag never parse; Step Functions rejects an invalid
one only at deploy time (the stack rolls back). The `asl-validator` npm package (pinned in package.json, installed
by `make setup`) checks them against the ASL JSON schema (https://states-language.net/spec.html) once the
intrinsics are resolved to placeholders (tests/stacks/intrinsics.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.stacks.conftest import PROJECT_ROOT, VARIANTS, Synthesized
from tests.stacks.intrinsics import resolve

VALIDATOR = PROJECT_ROOT / "node_modules" / ".bin" / "asl-validator"
PINNED = json.loads((PROJECT_ROOT / "package.json").read_text())["devDependencies"]["asl-validator"]


def definitions(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """Each state machine's definition as Step Functions will receive it (intrinsics resolved)."""
    template = synthesized.json
    return {
        logical_id: json.loads(resolve(resource["Properties"]["DefinitionString"], template))
        for logical_id, resource in synthesized.resources("AWS::StepFunctions::StateMachine").items()
    }


def validate(named: dict[str, dict[str, Any]], folder: Path) -> dict[str, str]:
    """Run the validator on each definition; the ones it refuses, with its report."""
    refused = {}
    for name, definition in named.items():
        path = folder / f"{name}.asl.json"
        path.write_text(json.dumps(definition))
        result = subprocess.run(
            [str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            refused[name] = (result.stdout + result.stderr).strip()
    return refused


@pytest.fixture(scope="module")
def validator() -> Path:
    if not VALIDATOR.exists():
        pytest.fail(f"{VALIDATOR} missing: run `make setup` (npm ci installs asl-validator {PINNED})")
    version = subprocess.run([str(VALIDATOR), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.strip() == PINNED, (
        f"node_modules has asl-validator {version.strip()}, package.json pins {PINNED}"
    )
    return VALIDATOR


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_state_machine_is_valid_states_language(
    variant: str, validator: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    synthesized: Synthesized = request.getfixturevalue(variant)
    named = definitions(synthesized)
    assert validate(named, tmp_path) == {}


def test_the_variants_cover_every_state_machine_and_both_manifest_branches(
    no_model: Synthesized, with_model: Synthesized, scoped_backfill: Synthesized
) -> None:
    assert {re.sub(r"[0-9A-F]{8}$", "", name) for name in definitions(with_model)} == {
        "BackfillStateMachine",
        "TrainingPipelineStateMachine",
    }
    assert len(definitions(no_model)) == 1  # no endpoint, no backfill
    # The manifest branch has two shapes: a Fail without an inventory bucket, a Choice with one
    backfills = [
        d["States"]
        for synthesized in (with_model, scoped_backfill)
        for name, d in definitions(synthesized).items()
        if name.startswith("Backfill")
    ]
    assert "CheckManifest" not in backfills[0]
    assert backfills[1]["CheckManifest"]["Choices"]


def test_negative_control_the_validator_refuses_a_choice_without_choices(validator: Path, tmp_path: Path) -> None:
    # Given the shape the backfill once had with no inventory bucket: a Choice with only a Default
    definition = {
        "StartAt": "CheckManifest",
        "States": {
            "CheckManifest": {"Type": "Choice", "Default": "Disabled"},
            "Disabled": {"Type": "Fail", "Error": "Disabled"},
        },
    }
    # Then the validator names the state and the schema failure
    report = validate({"choice": definition}, tmp_path)["choice"]
    assert "SCHEMA_VALIDATION_FAILED" in report and "/States/CheckManifest" in report


def test_placeholders_resolve_every_intrinsic_of_the_definitions(with_model: Synthesized) -> None:
    text = json.dumps(definitions(with_model))
    assert "Fn::" not in text and '"Ref"' not in text
