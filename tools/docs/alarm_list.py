"""docs/reference/alarms.md from the synthesised templates: every CloudWatch alarm, in which labelling mode it
exists, what it watches and when it fires, each linked to its runbook entry in docs/operations.md.

The templates are the app's own (`app.build_app`), one per variant below, synthesised with cdk.json's context and
the variant's `-c` overrides, bundling skipped as in the tests (alarms do not depend on the Lambda bundle). The
tests render the page from their session's templates of the same variants and compare it with the committed one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PAGE = "docs/reference/alarms.md"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_URI = "s3://example-models/llava-run-7/model/"
# Column -> the `-c` overrides of its template. The first is cdk.json as committed (bootstrap: no model yet).
VARIANTS: dict[str, dict[str, str]] = {
    "no model yet": {},
    "realtime": {"photo_labeler.endpoint.model_data_uri": MODEL_URI},
    "async": {
        "photo_labeler.endpoint.model_data_uri": MODEL_URI,
        "photo_labeler.endpoint.mode": "async",
        "photo_labeler.endpoint.min_capacity": "0",
    },
    "scheduled": {
        "photo_labeler.endpoint.model_data_uri": MODEL_URI,
        "photo_labeler.endpoint.mode": "scheduled",
    },
}
_LOGICAL_ID_HASH = re.compile(r"[0-9A-F]{8}$")  # CDK appends a hash of the construct path
# Units of the thresholds that are not counts (CloudWatch metric documentation of SQS, SageMaker; ours: seconds).
_UNITS = {
    "ApproximateAgeOfOldestMessage": " s",
    "ApproximateAgeOfOldestRequest": " s",
    "ModelLatency": " µs",
    "OldestPendingSeconds": " s",
}
_OPERATORS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}


def context(variant: str) -> dict[str, Any]:
    """The app context of a variant's template: cdk.json's, bundling skipped, then its overrides."""
    committed = json.loads((PROJECT_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    return {**committed, "aws:cdk:bundling-stacks": [], **VARIANTS[variant]}


def synthesise() -> dict[str, dict[str, Any]]:
    """Variant -> its template (one synth each, a few seconds apiece)."""
    import os

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # as the Makefile sets it
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from app import build_app

    templates = {}
    for variant in VARIANTS:
        _app, stack = build_app(cdk.App(context=context(variant)))
        templates[variant] = Template.from_stack(stack).to_json()
    return templates


def _placeholders(variant: str) -> list[tuple[str, str]]:
    from stacks.config import AppConfig

    config = AppConfig.from_context(context(variant)["photo_labeler"], overrides=VARIANTS[variant])
    return [(config.endpoint_name, "<EndpointName>"), (config.name_prefix, "<name_prefix>")]


def _text(value: Any, variant: str) -> str:
    if not isinstance(value, str):
        return "(resolved at deploy)"
    for actual, placeholder in _placeholders(variant):
        value = value.replace(actual, placeholder)
    return value


def _metric(properties: Mapping[str, Any]) -> str:
    if "Metrics" in properties:
        expression = next(m["Expression"] for m in properties["Metrics"] if m.get("ReturnData", True))
        inputs = [
            f"`{m['MetricStat']['Metric']['Namespace']} {m['MetricStat']['Metric']['MetricName']}` "
            f"{m['MetricStat']['Stat']}"
            for m in properties["Metrics"]
            if "MetricStat" in m
        ]
        period = next(m["MetricStat"]["Period"] for m in properties["Metrics"] if "MetricStat" in m)
        return f"`{expression}` of {', '.join(inputs)}, {period} s"
    statistic = properties.get("Statistic") or properties.get("ExtendedStatistic")
    return f"`{properties['Namespace']} {properties['MetricName']}` {statistic}, {properties['Period']} s"


def _fires(properties: Mapping[str, Any]) -> str:
    periods = properties["EvaluationPeriods"]
    datapoints = properties.get("DatapointsToAlarm", periods)
    threshold = properties["Threshold"]
    runs = f"{datapoints} of {periods} periods" if periods > 1 else "1 period"
    unit = _UNITS.get(properties.get("MetricName", ""), "")
    return f"{_OPERATORS[properties['ComparisonOperator']]} {threshold:,}{unit}, {runs}"


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, and `<...>` outside code spans shown rather than read as HTML."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(parts))


def runbook_anchors() -> dict[str, str]:
    """Alarm id -> the anchor of its entry in docs/operations.md (headings "### `AlarmId` (named `...`)")."""
    from tools.docs.pages import slug

    runbook = (PROJECT_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    return {
        match.group(1): slug(match.group(0).removeprefix("### "))
        for match in re.finditer(r"^### `([A-Za-z0-9]+)`.*$", runbook, re.MULTILINE)
    }


def render(templates: Mapping[str, Mapping[str, Any]]) -> str:
    """The page, from each variant's template (keys: VARIANTS)."""
    entries = runbook_anchors()
    found: dict[str, dict[str, Any]] = {}  # alarm id -> first variant's properties, variant names
    for variant in VARIANTS:
        for logical_id, resource in templates[variant]["Resources"].items():
            if resource["Type"] != "AWS::CloudWatch::Alarm":
                continue
            alarm = _LOGICAL_ID_HASH.sub("", logical_id)
            entry = found.setdefault(alarm, {"properties": resource["Properties"], "in": [], "first": variant})
            entry["in"].append(variant)
    lines = [
        "# Alarm list",
        "",
        "<!-- Generated by `python -m tools.docs` from the synthesised templates: do not edit. -->",
        "",
        "Every CloudWatch alarm the stack creates, read from the synthesised template of each labelling mode",
        '(with a model; "no model yet" is the committed `cdk.json`, before the first training run). Each alarm',
        "links to its runbook entry: what it means, the first action and the command. Alarms with a name notify",
        "the alarm topic when they fire and when they clear. Other keys add or remove a few (the runbook's",
        "**Exists** line says which), e.g. `monitoring.backfill_failed_alarm: false` removes the backfill's.",
        "",
        "| alarm | name | watches | fires when | " + " | ".join(VARIANTS) + " |",
        "|---|---|---|---|" + "---|" * len(VARIANTS),
    ]
    for alarm in sorted(found, key=lambda a: (-len(found[a]["in"]), list(VARIANTS).index(found[a]["first"]), a)):
        entry = found[alarm]
        properties, variant = entry["properties"], entry["first"]
        name = f"`{_text(properties['AlarmName'], variant)}`" if "AlarmName" in properties else "(unnamed)"
        marks = " | ".join("yes" if v in entry["in"] else "" for v in VARIANTS)
        link = f"[`{alarm}`](../operations.md#{entries[alarm]})" if alarm in entries else f"`{alarm}`"
        lines.append(f"| {link} | {name} | {_cell(_metric(properties))} | {_fires(properties)} | {marks} |")
    lines += ["", "## What each one says", ""]
    for alarm in sorted(found):
        entry = found[alarm]
        description = entry["properties"].get("AlarmDescription")
        if description is not None:
            lines += [f"- **`{alarm}`**: {_cell(_text(description, entry['first']))}"]
    return "\n".join(lines) + "\n"
