"""The fixed monthly costs count what the synthesized stack really creates, in each labelling mode."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tools.cost import prices
from tools.cost.fixed import ASYNC, INIT_SECONDS, INIT_SHARE, REAL_TIME, RESOURCES, SCHEDULED, init_gb_seconds
from tools.cost.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[3]
MODEL_URI = "s3://example-models/llava-run-7/model/"
VARIANTS = {
    REAL_TIME: {"photo_labeler.endpoint.model_data_uri": MODEL_URI},
    ASYNC: {
        "photo_labeler.endpoint.model_data_uri": MODEL_URI,
        "photo_labeler.endpoint.mode": "async",
        "photo_labeler.endpoint.min_capacity": "0",
    },
    SCHEDULED: {"photo_labeler.endpoint.model_data_uri": MODEL_URI, "photo_labeler.endpoint.mode": "scheduled"},
}


def counted(resources: dict[str, dict[str, Any]]) -> dict[str, int]:
    """What CloudWatch, KMS and Lambda bill monthly, read from a template's resources."""
    alarm_metrics = 0
    for resource in resources.values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        # CloudWatch bills an alarm per metric it reads; a metric-math alarm reads each MetricStat it names
        alarm_metrics += 1 if "MetricName" in props else sum("MetricStat" in m for m in props["Metrics"])
    # Every event source mapping of this stack reads an SQS queue (uploads, async completions)
    polled = {
        str(r["Properties"]["EventSourceArn"])
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    return {
        "alarm_metrics": alarm_metrics,
        "target_tracking_policies": sum(
            r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"
            and r["Properties"]["PolicyType"] == "TargetTrackingScaling"
            for r in resources.values()
        ),
        "dashboards": sum(r["Type"] == "AWS::CloudWatch::Dashboard" for r in resources.values()),
        "kms_keys": sum(r["Type"] == "AWS::KMS::Key" for r in resources.values()),
        "polled_queues": len(polled),
    }


@pytest.mark.slow
@pytest.mark.parametrize("mode", [REAL_TIME, ASYNC, SCHEDULED])
def test_the_counts_are_the_synthesized_stacks(mode: str) -> None:
    from tests.stacks.conftest import synth

    resources = synth(VARIANTS[mode]).json["Resources"]
    expected = RESOURCES[mode]
    assert counted(resources) == {
        "alarm_metrics": expected.alarm_metrics,
        "target_tracking_policies": expected.target_tracking_policies,
        "dashboards": expected.dashboards,
        "kms_keys": expected.kms_keys,
        "polled_queues": expected.polled_queues,
    }


@pytest.mark.parametrize("mode", [REAL_TIME, ASYNC, SCHEDULED])
def test_every_counted_metric_is_one_the_functions_emit(mode: str) -> None:
    source = "".join(path.read_text() for path in (PROJECT_ROOT / "lambda").glob("*.py"))
    emitted = set(re.findall(r'"([A-Z][A-Za-z]+)"', source))
    counted = RESOURCES[mode]
    assert set(counted.metric_names) | set(counted.window_metric_names) <= emitted


def test_custom_metrics_are_the_names_one_per_label_and_the_review_pages() -> None:
    # Real-time: 6 names + 26 labels + 7 review metrics (ReviewDecisionsByKind once per decision kind) = 39
    assert RESOURCES[REAL_TIME].custom_metrics(Settings()) == 6 + 26 + 7
    assert RESOURCES[REAL_TIME].custom_metrics(Settings(review_enabled=False, labels=10)) == 6 + 10
    # Scheduled: the upload Lambda's 4 (it labels nothing, so no metric per label) + the window's 7 + review 7
    assert RESOURCES[SCHEDULED].custom_metrics(Settings()) == 4 + 7 + 7


def test_lambda_init_is_billed_on_one_cold_start_in_a_hundred() -> None:
    # 100,000 invocations x 1 % x 0.85 s x 0.625 GB = 531.25 GB-s
    assert (INIT_SHARE, INIT_SECONDS) == (0.01, 0.85)
    assert init_gb_seconds(100_000, 640) == pytest.approx(531.25)


def test_the_alarm_and_dashboard_prices_are_cloudwatchs() -> None:
    loaded = prices.load()
    assert (loaded.alarm_metric_month, loaded.high_resolution_alarm_metric_month, loaded.dashboard_month) == (
        0.10,
        0.30,
        3.00,
    )


def test_the_cost_model_pages_monthly_totals_are_what_the_model_charges() -> None:
    from tools.cost import settings
    from tools.cost.fixed import fixed_parts

    page = (PROJECT_ROOT / "docs" / "cost-model.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| **total a month**"))
    printed = [float(cell.strip(" *$")) for cell in row.strip("|").split("|")[1:]]
    loaded, price_list = settings.load(), prices.load()
    charged = [
        sum(usd for _, usd, _ in fixed_parts(mode, loaded, price_list)) for mode in (REAL_TIME, ASYNC, SCHEDULED)
    ]
    assert printed == pytest.approx(charged, abs=0.005)
