"""The whole system's monthly bill, part by part, checked against hand-computed cases (prices.json's prices)."""

from __future__ import annotations

import pytest

from tools.cost import prices
from tools.cost.fleet import ASYNC, REAL_TIME, Assumptions, Performance
from tools.cost.settings import Settings
from tools.cost.system import Crossing, Scenario, backfill_scenario, break_even, regimes, upload_scenario

PERF = Performance(seconds_per_photo=1.0, unloaded_latency=2.0)
# The hand computations' settings: 1 GB functions and 12 upload invocations (the defaults may move).
HAND = Settings(upload_memory_mb=1024, upload_max_concurrency=12, backfill_memory_mb=1024)
ASSUME = Assumptions(cold_start_minutes=10, async_idle_minutes=15)
PRICES = prices.load()
MONTH_PHOTOS = 86_400 * 730 / 24  # a flat photo a second for AWS's 730-hour month = 2,628,000
# Work a photo at 1,024 MB: 0.10 s of I/O + 0.075 s of normalising on 1024/1769 of a vCPU = 0.229565 s
WORK = 0.10 + 0.075 * 1769 / 1024


def parts(scenario: Scenario) -> dict[str, float]:
    return {p.name: p.usd_per_month for p in scenario.parts}


def test_the_prices_the_hand_computations_use() -> None:
    assert (PRICES.lambda_gb_second_x86, PRICES.lambda_per_request) == (0.0000166667, 0.20 / 1e6)
    assert (PRICES.s3_get, PRICES.s3_put, PRICES.sqs_per_request) == (0.0004 / 1e3, 0.005 / 1e3, 0.40 / 1e6)
    assert (PRICES.dynamodb_read_unit, PRICES.dynamodb_write_unit) == (0.125 / 1e6, 0.625 / 1e6)


def test_real_time_upload_month_by_hand() -> None:
    # 86,400 photos a day, flat (1/s); 1 s a photo, 2 s alone; $1 an instance-hour; defaults otherwise.
    scenario = upload_scenario(
        mode=REAL_TIME, photos_per_day=86_400, curve=None, perf=PERF, settings=HAND,
        prices=PRICES, instance_price=1.0, assumptions=ASSUME,
    )  # fmt: skip
    got = parts(scenario)
    assert scenario.photos == pytest.approx(2_628_000)
    # Endpoint: 2 instances (ceil(1 / (6/7))) x 24 h x 30.4167 days x $1 = $1,460
    assert got["Endpoint"] == pytest.approx(1460.0)
    # Lambda: each photo waits 2 s (rho 0.5 on 2 instances: max(2, 1/0.5)) + 0.229565 s of work = 2.229565 s,
    # 1 GB: 2,628,000 x 2.229565 = 5,859,297 GB-s x $0.0000166667 = $97.655
    assert scenario.waiting_seconds_per_photo == pytest.approx(2.0)
    # + INIT on 1 % of the 657,000 invocations: 6,570 x 0.85 s x 1 GB = 5,584.5 GB-s = $0.0931
    init = 657_000 * 0.01 * 0.85 * 0.0000166667
    assert got["Lambda duration"] == pytest.approx(2_628_000 * (2 + WORK) * 0.0000166667 + init)
    assert got["Lambda duration"] == pytest.approx(97.655 + 0.0931, abs=0.01)
    # Requests: 657,000 batches of 4 x $0.20/M = $0.1314
    assert got["Lambda requests"] == pytest.approx(0.1314)
    # S3: one GET a photo: 2,628,000 x $0.0004/1,000 = $1.0512
    assert got["S3 requests"] == pytest.approx(1.0512)
    # SQS: 2,628,000 sends + 657,000 receives + 657,000 deletes = 3,942,000 x $0.40/M = $1.5768; plus 5 idle
    # long-pollers: 5 x 730 h x 3,600 / 20 s = 657,000 x $0.40/M = $0.2628. Total $1.8396
    assert got["SQS requests"] == pytest.approx(1.8396)
    # DynamoDB: 1 RRU + 3 WRU a photo = $0.125/M + 3 x $0.625/M = $2.0/M x 2,628,000 = $5.256
    assert got["DynamoDB"] == pytest.approx(5.256)
    # CloudWatch: logs (2,628,000 x 1,000 B + 657,000 x 1,500 B) = 3.6135 GB x $0.50 = $1.80675; X-Ray 657,000
    # traces x $5/M = $3.285; 6 + 26 per label + 7 review custom metrics = 39 x $0.30 = $11.70. Total $16.79175
    assert got["CloudWatch + X-Ray"] == pytest.approx(16.79175)
    # 13 alarm metrics x $0.10 + target tracking's 2 high-resolution alarms x $0.30 + one dashboard $3 = $4.90
    assert got["Alarms + dashboard"] == pytest.approx(4.90)
    assert got["KMS keys"] == pytest.approx(2.0)
    assert scenario.dominant.name == "Endpoint"
    assert scenario.usd_total == pytest.approx(sum(got.values()))
    assert scenario.usd_per_1000 == pytest.approx(scenario.usd_total / 2628)


def test_async_upload_month_by_hand() -> None:
    # Same traffic, async: the backlog target keeps one saturated instance (not real-time's 2), busy all day; the
    # Lambda does not wait.
    scenario = upload_scenario(
        mode=ASYNC, photos_per_day=86_400, curve=None, perf=PERF, settings=HAND,
        prices=PRICES, instance_price=1.0, assumptions=ASSUME,
    )  # fmt: skip
    got = parts(scenario)
    assert got["Endpoint"] == pytest.approx(730.0)
    # Submitter 0.229565 + 0.05 s (PutObject + InvokeEndpointAsync) + writer 0.05 s = 0.329565 s x 1 GB
    # x 2,628,000 = 866,097 GB-s x $0.0000166667 = $14.435; + INIT 1,314,000 x 1 % x 0.85 s = $0.1862
    assert got["Lambda duration"] == pytest.approx(14.435 + 0.1862, abs=0.01)
    assert scenario.waiting_seconds_per_photo == 0.0
    # Two functions, 657,000 batches each: 1,314,000 x $0.20/M = $0.2628
    assert got["Lambda requests"] == pytest.approx(0.2628)
    # S3 (lambda/async_aws.py, tools/async_worker.py): GETs of the photo, the request (SageMaker), the ticket and
    # the answer (writer); PUTs of the ticket, the request and the answer:
    # 4 x $0.0004/1,000 + 3 x $0.005/1,000 = $0.0000166 x 2,628,000 = $43.6248
    assert got["S3 requests"] == pytest.approx(43.6248)
    # DynamoDB: GetItem 1 RRU; claim 2 + mark_invoked 2 + the answer's PutItem 4 WRU = 8:
    # ($0.125 + 8 x $0.625) / 1e6 x 2,628,000 = $13.4685
    assert got["DynamoDB"] == pytest.approx(13.4685)
    # SQS: two queues, each 3,942,000 requests and 657,000 idle polls: 2 x (1.5768 + 0.2628) = $3.6792
    assert got["SQS requests"] == pytest.approx(3.6792)
    # SNS: one completion notification a photo: 2,628,000 x $0.50/M = $1.314
    assert got["SNS"] == pytest.approx(1.314)
    # CloudWatch: (2,628,000 x 1,000 + 1,314,000 x 1,500) B = 4.599 GB x $0.50 = $2.2995; X-Ray 1,314,000 x
    # $5/M = $6.57; 5 + 4 async + 26 per label + 7 review = 42 metrics x $0.30 = $12.60. Total $21.4695
    assert got["CloudWatch + X-Ray"] == pytest.approx(21.4695)
    # 16 alarm metrics + target tracking's 2 one-minute alarms x $0.10 + $3 dashboard = $4.80; 4 KMS keys
    assert got["Alarms + dashboard"] == pytest.approx(4.80)
    assert got["KMS keys"] == pytest.approx(4.0)


def test_real_time_backfill_by_hand() -> None:
    # 1,000,000 photos, backfill concurrency 8, target 6: ceil(8/6) = 2 instances; throughput
    # min(8 in flight / 2 s, 2 x 1/s) = 2/s; 500,000 s = 138.9 h on 2 instances = 277.8 instance-hours x $1.
    scenario = backfill_scenario(
        mode=REAL_TIME, photos=1_000_000, perf=PERF, settings=Settings(), prices=PRICES,
        instance_price=1.0, assumptions=ASSUME,
    )  # fmt: skip
    got = parts(scenario)
    assert scenario.duration_hours == pytest.approx(1_000_000 / 2 / 3600)
    assert got["Endpoint"] == pytest.approx(277.778, abs=0.001)
    # Little's law: 8 invocations in flight / 2 photos a second = 4 s waiting a photo, + 0.229565 s of work
    # = 4.229565 GB-s x 1,000,000 x $0.0000166667 = $70.49
    assert scenario.waiting_seconds_per_photo == pytest.approx(4.0)
    assert got["Lambda duration"] == pytest.approx(70.49, abs=0.01)
    # 40,000 batches of 25: Lambda 40,000 x $0.20/M = $0.008; Step Functions 3 transitions each x $0.025/1,000
    # = $3.00; no SQS
    assert got["Lambda requests"] == pytest.approx(0.008)
    assert got["Step Functions"] == pytest.approx(3.0)
    assert got["SQS requests"] == 0.0


def test_async_backfill_fills_the_whole_fleet_and_pays_its_start_and_stop() -> None:
    # The backlog scales out to max_capacity 4: 4 photos/s, 250,000 s = 69.44 h x 4 = 277.78 instance-hours,
    # + 4 x (10 min start + 15 min idle) = 1.667 h => 279.44 instance-hours x $1
    scenario = backfill_scenario(
        mode=ASYNC, photos=1_000_000, perf=PERF, settings=Settings(), prices=PRICES,
        instance_price=1.0, assumptions=ASSUME,
    )  # fmt: skip
    assert scenario.duration_hours == pytest.approx(1_000_000 / 4 / 3600)
    assert parts(scenario)["Endpoint"] == pytest.approx(277.778 + 4 * 25 / 60, abs=0.001)


def test_break_even_finds_where_the_two_bills_cross() -> None:
    # Two straight lines: real-time 100 + v, async 10 v: they cross at v = 100 / 9 = 11.11
    crossings = break_even({REAL_TIME: lambda v: 100 + v, ASYNC: lambda v: 10 * v}, low=1, high=1000)
    assert crossings == [Crossing(pytest.approx(100 / 9, rel=1e-6))]
    runs = regimes({REAL_TIME: lambda v: 100 + v, ASYNC: lambda v: 10 * v}, low=1, high=1000, steps=30)
    assert runs[0][2] == "async" and runs[-1][2] == "real-time"


def test_a_fleet_step_is_not_reported_as_a_break_even() -> None:
    # Real-time adds an instance at 50 photos a day (its bill jumps from $100 to $200); async costs $150 all
    # along. The sign of the difference flips at 50, but the bills are never equal there: a step, not a crossing.
    def real_time(volume: float) -> float:
        return 100.0 if volume < 50 else 200.0

    found = break_even({REAL_TIME: real_time, ASYNC: lambda v: 150.0}, low=1, high=1000)
    assert len(found) == 1
    assert found[0].photos_per_day == pytest.approx(50, rel=1e-6)
    assert found[0].step == REAL_TIME
    assert found[0].jump_usd == pytest.approx(100.0)


def test_async_beats_real_time_at_a_trickle_and_ties_at_steady_traffic() -> None:
    # 10 photos a day: async pays ~25 min of instance per photo, real-time one instance all day
    def total(mode: str, per_day: float) -> float:
        return upload_scenario(
            mode=mode, photos_per_day=per_day, curve=None, perf=PERF, settings=Settings(),
            prices=PRICES, instance_price=1.0, assumptions=ASSUME,
        ).usd_total  # fmt: skip

    assert total(ASYNC, 10) < total(REAL_TIME, 10) / 4
    assert total(ASYNC, 5000) == pytest.approx(total(REAL_TIME, 5000), rel=0.02)


def test_arm64_prices_the_lambda_twenty_percent_lower() -> None:
    def lambda_cost(architecture: str) -> float:
        scenario = upload_scenario(
            mode=REAL_TIME, photos_per_day=86_400, curve=None, perf=PERF, settings=Settings(),
            prices=PRICES, instance_price=1.0, assumptions=Assumptions(architecture=architecture),
        )  # fmt: skip
        return parts(scenario)["Lambda duration"]

    assert lambda_cost("arm64") / lambda_cost("x86_64") == pytest.approx(0.0000133334 / 0.0000166667)


def test_fixed_monthly_costs_are_charged_without_a_single_photo_in_every_mode() -> None:
    # Alarms, the dashboard, custom metrics, KMS keys and idle polling cost the same at 1 photo a day as at
    # 100,000: their sum is the difference between two volumes' bills minus the per-photo parts.
    def fixed(mode: str) -> float:
        scenario = upload_scenario(
            mode=mode, photos_per_day=1, curve=None, perf=PERF, settings=HAND,
            prices=PRICES, instance_price=1.0, assumptions=ASSUME,
        )  # fmt: skip
        got = parts(scenario)
        return got["Alarms + dashboard"] + got["KMS keys"]

    assert fixed(REAL_TIME) == pytest.approx(4.90 + 2.0)
    assert fixed(ASYNC) == pytest.approx(4.80 + 4.0)
