"""The defaults the measurements support, computed by hand."""

from __future__ import annotations

import pytest

from tools.cost import prices, sizing
from tools.cost.fleet import Performance
from tools.cost.settings import Settings

PERF = Performance(seconds_per_photo=1.0, unloaded_latency=2.0)
# The hand computations' settings: 1 GB functions and 12 upload invocations (the defaults may move).
HAND = Settings(upload_memory_mb=1024, upload_max_concurrency=12, backfill_memory_mb=1024)


def test_lambda_memory_is_the_worst_case_peak_with_a_margin() -> None:
    # 30 MB runtime + 58 MB imports + 50 MB object + 107 MB x 40/12 MP (356.7) = 494.7 MB
    # x 1.25 = 618.3 MB, rounded up to 64 MB steps = 640 MB
    sized = sizing.memory(Settings())
    assert sized.peak_mb == pytest.approx(494.67, abs=0.01)
    assert sized.recommended_mb == 640
    # Less memory, less CPU: 0.075 s x 1769/640 = 0.2073 s of normalising + 0.1 s of I/O
    assert sized.work_seconds_recommended == pytest.approx(0.1 + 0.075 * 1769 / 640)


def test_in_flight_beyond_saturation_only_adds_waiting() -> None:
    rows = {r.per_instance: r for r in sizing.in_flight(PERF, HAND, prices.load())}
    # 1 in flight: 1 / 2 s = 0.5 photos/s, half the instance; waits 2 s
    assert rows[1].throughput_share == pytest.approx(0.5)
    assert rows[1].waiting_seconds == pytest.approx(2.0)
    # 2 in flight saturate (bound: 2 s / 1 s = 2); 8 in flight: still 1/s, each waits 8 / 1 = 8 s
    assert rows[2].throughput_share == pytest.approx(1.0)
    assert rows[8].throughput_share == pytest.approx(1.0)
    assert rows[8].waiting_seconds == pytest.approx(8.0)
    # Lambda $ / 1,000 at 1 GB: (8 + 0.229565) s x $0.0000166667 x 1,000 = $0.13716
    assert rows[8].lambda_usd_per_1000 == pytest.approx((8 + 0.1 + 0.075 * 1769 / 1024) * 0.0000166667 * 1000)


def test_recommendations_name_the_keys_and_their_values() -> None:
    by_key = {r.key: r for r in sizing.recommendations(PERF, HAND)}
    assert by_key["upload.function_memory_mb, backfill.function_memory_mb"].recommended == "640"
    # 4 instances x target 6 = 24 in flight to let uploads alone reach max_capacity (12 reach ceil(12/6) = 2)
    upload = by_key["upload.max_concurrency"]
    assert upload.recommended == "24"
    assert "never drive more than 2 of the 4 instances" in upload.reason
