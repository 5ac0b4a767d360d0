"""docs/operations.md has a runbook entry for every alarm any configuration variant creates, and no stale one."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from tests.stacks.conftest import PROJECT_ROOT, VARIANTS

RUNBOOK = PROJECT_ROOT / "docs" / "operations.md"
# A CDK logical id is the construct path's ids joined, then an 8-hex-digit hash of the path.
_LOGICAL_ID_HASH = re.compile(r"[0-9A-F]{8}$")
_ENTRY = re.compile(r"^### `(?P<alarm>[A-Za-z0-9]+)`.*$", re.MULTILINE)
FIELDS = ("**Exists:**", "**Fires when:**", "**Means:**", "**First action:**", "**Command:**")


def alarm_ids(template: Mapping[str, Any]) -> set[str]:
    """The alarms of a synthesised template, by logical id without its hash (the id the runbook uses)."""
    return {
        _LOGICAL_ID_HASH.sub("", logical_id)
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::CloudWatch::Alarm"
    }


def runbook_entries(text: str) -> dict[str, str]:
    """Heading alarm id -> the entry's text, up to the next heading."""
    matches = list(_ENTRY.finditer(text))
    ends = [m.start() for m in matches[1:]] + [len(text)]
    return {m.group("alarm"): text[m.end() : end] for m, end in zip(matches, ends, strict=True)}


def missing_entries(templates: Iterable[Mapping[str, Any]], entries: Mapping[str, str]) -> set[str]:
    return set().union(*(alarm_ids(t) for t in templates)) - set(entries)


@pytest.fixture(scope="module")
def every_variant(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    return {name: request.getfixturevalue(name).json for name in VARIANTS}


@pytest.mark.slow
def test_every_alarm_of_every_variant_has_a_runbook_entry(every_variant: dict[str, dict[str, Any]]) -> None:
    entries = runbook_entries(RUNBOOK.read_text(encoding="utf-8"))
    created = {name: alarm_ids(template) for name, template in every_variant.items()}

    missing = missing_entries(every_variant.values(), entries)
    assert not missing, f"alarms without an entry in {RUNBOOK.name}: {sorted(missing)}"
    stale = set(entries) - set().union(*created.values())
    assert not stale, f"{RUNBOOK.name} has entries for alarms no variant creates: {sorted(stale)}"
    # The variants between them create each alarm kind; async mode adds three
    assert created["async_mode"] - created["with_model"] == {
        "AsyncInferenceDeadLetterQueueAlarm",
        "AsyncScalingHasBacklogWithoutCapacity",
        "MonitoringAsyncBacklogAgeAlarm",
    }


def test_every_entry_says_when_it_exists_fires_what_it_means_what_to_do_and_the_command() -> None:
    entries = runbook_entries(RUNBOOK.read_text(encoding="utf-8"))
    assert len(entries) >= 11
    for alarm, text in entries.items():
        for field in FIELDS:
            assert field in text, f"{alarm}: no {field}"
        assert "```bash" in text, f"{alarm}: the command is not a runnable block"


def test_a_template_with_an_alarm_the_runbook_lacks_fails_the_gate() -> None:
    # Negative control: the same check on a template with one more alarm than the runbook knows
    entries = runbook_entries(RUNBOOK.read_text(encoding="utf-8"))
    template = {
        "Resources": {
            "UploadPathDeadLetterQueueAlarm619C69CA": {"Type": "AWS::CloudWatch::Alarm", "Properties": {}},
            "MonitoringDiskFullAlarm0A1B2C3D": {"Type": "AWS::CloudWatch::Alarm", "Properties": {}},
            "UploadPathQueueABCDEF12": {"Type": "AWS::SQS::Queue", "Properties": {}},
        }
    }
    assert missing_entries([template], entries) == {"MonitoringDiskFullAlarm"}


def test_the_runbook_is_linked_from_the_readme() -> None:
    assert "docs/operations.md" in (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
