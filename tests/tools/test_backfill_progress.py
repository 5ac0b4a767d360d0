"""The backfill's progress display: the rate over its window, the bar and the durations it prints."""

from __future__ import annotations

import pytest

from tools.backfill_progress import Progress, RateMeter, format_duration, render

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:photo-labeler-backfill:backfill-archive-1"
MAP_RUN = "arn:aws:states:us-east-1:123456789012:mapRun:photo-labeler-backfill/backfill-archive-1:abc"


def test_rate_uses_only_the_recent_window() -> None:
    meter = RateMeter(window_seconds=60)
    # A slow start (10 items/s for 5 min), then 100 items/s for 2 min
    for second in range(0, 301, 10):
        meter.add(second, second * 10)
    for second in range(310, 421, 10):
        meter.add(second, 3_000 + (second - 300) * 100)
    assert meter.rate == pytest.approx(100.0, rel=0.01)


def test_progress_bar_is_full_width_and_never_overflows() -> None:
    over = Progress(EXECUTION, "RUNNING", MAP_RUN, total=10, succeeded=10, failed=0)
    empty = Progress(EXECUTION, "RUNNING", MAP_RUN, total=0)
    assert render(over, None, width=20).startswith("[" + "#" * 20 + "] 100.0%")
    assert render(empty, None, width=20).startswith("[" + "-" * 20 + "]   0.0%")


@pytest.mark.parametrize(
    ("seconds", "text"), [(42, "42s"), (125, "2m05s"), (3 * 3600 + 60, "3h01m"), (5 * 86400 + 7200, "5d02h")]
)
def test_durations_read_naturally(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
