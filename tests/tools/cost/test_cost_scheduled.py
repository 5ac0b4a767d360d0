"""The whole system in scheduled mode: a month of uploads and a backfill, checked against hand-computed cases."""

from __future__ import annotations

import pytest

from tools.cost import prices
from tools.cost.fixed import SCHEDULED, fixed_parts
from tools.cost.fleet import Performance
from tools.cost.job import JobAssumptions, backfill_plan
from tools.cost.scheduled import job_assumptions, scheduled_backfill_scenario, scheduled_scenario
from tools.cost.settings import Settings
from tools.cost.startup import AWS, DEFAULT_START_UP, PROJECT, Phase, StartUp

PRICES = prices.load()
START = StartUp(
    (
        Phase("provisioning", 100.0, billed=False, controlled_by=AWS, basis="hand"),
        Phase("the rest", 300.0, billed=True, controlled_by=PROJECT, basis="hand"),
    )
)
# 1 s a photo, $1 an hour on-demand, Spot 60 % off, no interruption
JOB = JobAssumptions(
    seconds_per_photo=1.0, start_up=START, on_demand_hour=1.0, spot_discount=0.6, interruptions_per_host_hour=0.0
)
HAND = Settings(upload_memory_mb=1024)
MONTH = 730 / 24  # days


def parts(scenario: object) -> dict[str, float]:
    return {p.name: p.usd_per_month for p in scenario.parts}  # type: ignore[attr-defined]


def test_a_month_of_ten_thousand_uploads_a_day_by_hand() -> None:
    scenario = scheduled_scenario(photos_per_day=10_000, curve=None, settings=HAND, prices=PRICES, job=JOB)
    got = parts(scenario)
    photos = 10_000 * MONTH
    assert scenario.photos == pytest.approx(photos)
    # Four 6-hour windows of 2,500 photos, one host each: (300 + 2,500) s x $0.40 an hour on Spot = $0.3111 a
    # window, $1.2444 a day, $37.85 a month
    assert got["Labelling job"] == pytest.approx(4 * 2_800 / 3600 * 0.40 * MONTH)
    # DynamoDB: reads = the Lambda's and the job's GetItem + the window's Query (400 B / 4 KB x 0.5) = 2.0488 RRU;
    # writes = PENDING (table + by-status) 2 + the label's PutItem 4 = 6 WRU
    assert got["DynamoDB"] == pytest.approx(photos * ((2 + 400 / 4096 * 0.5) * 0.125e-6 + 6 * 0.625e-6))
    # S3: 2 GETs a photo (the upload Lambda's and the job's); PUTs: a checkpoint file per 64 photos, a shard
    # per 2,000
    assert got["S3 requests"] == pytest.approx(photos * (2 * 0.4e-6 + (1 / 64 + 1 / 2000) * 5e-6))
    # Fixed monthly costs of the scheduled stack: no endpoint alarms, no scaling policy
    fixed = dict((name, usd) for name, usd, _ in fixed_parts(SCHEDULED, HAND, PRICES))
    assert got["Alarms + dashboard"] == pytest.approx(fixed["Alarms + dashboard"]) == pytest.approx(12 * 0.1 + 3)
    assert "Endpoint" not in got
    # The worst wait: the 6-hour interval + provisioning + the job, + the Spot capacity wait before the fallback
    assert scenario.worst_minutes == pytest.approx(360 + (100 + 2_800) / 60 + 60)
    assert scenario.dominant.name == "Labelling job"


def test_on_demand_windows_cost_the_training_rate() -> None:
    on_demand = Settings(scheduled=HAND.scheduled.__class__(use_spot=False), upload_memory_mb=1024)
    scenario = scheduled_scenario(photos_per_day=10_000, curve=None, settings=on_demand, prices=PRICES, job=JOB)
    assert parts(scenario)["Labelling job"] == pytest.approx(4 * 2_800 / 3600 * 1.0 * MONTH)
    assert scenario.worst_minutes == pytest.approx(360 + 2_900 / 60)  # no Spot wait


def test_the_backfill_is_labelled_by_back_to_back_windows() -> None:
    scenario = scheduled_backfill_scenario(photos=1_000_000, settings=HAND, prices=PRICES, job=JOB)
    plan = backfill_plan(1_000_000, HAND.scheduled, JOB)
    assert parts(scenario)["Labelling job"] == pytest.approx(plan.usd)
    assert scenario.duration_hours == pytest.approx(plan.duration_hours)
    # 1M photos on 4 hosts at 1 s a photo: ~69 hours of labelling at the least
    assert scenario.duration_hours > 1_000_000 / 4 / 3600


def test_the_job_runs_at_the_served_paths_speed_over_the_offline_engines_measured_advantage() -> None:
    perf = Performance(seconds_per_photo=0.674, unloaded_latency=1.15)
    job = job_assumptions(perf, Settings(), PRICES, start_up=DEFAULT_START_UP, offline_speedup=1.25)
    assert job.seconds_per_photo == pytest.approx(0.674 / 1.25)
    assert job.on_demand_hour == 1.408  # the training rate of scheduled.instance_type
    assert job.spot_discount == PRICES.spot_discount
    with pytest.raises(ValueError, match="speed-up"):
        job_assumptions(perf, Settings(), PRICES, start_up=DEFAULT_START_UP, offline_speedup=0)
