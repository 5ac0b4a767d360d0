"""A backfill's progress, read from Step Functions: the map run's item counters, the rate over a sliding window,
the one-line bar `python -m tools.backfill watch` redraws, and the summary of an ended backfill.

processed = items in batches that succeeded (labelled, or skipped because already labelled), failed = items in
batches that failed after their retries, remaining = total - processed - failed (tools/backfill.py's docstring).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

DEFAULT_RATE_WINDOW_SECONDS = 120.0
BAR_WIDTH = 30
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


@dataclass(frozen=True)
class Progress:
    execution_arn: str
    status: str  # the execution's: RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED | PENDING_REDRIVE
    map_run_arn: str | None = None
    total: int = 0
    succeeded: int = 0
    failed: int = 0  # failed + timed out + aborted items
    running: int = 0
    pending: int = 0
    redrive_count: int = 0
    error: str | None = None
    cause: str | None = None
    output: dict[str, Any] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return max(self.total - self.succeeded - self.failed, 0)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


def read_progress(sfn: Any, execution_arn: str) -> Progress:
    execution = sfn.describe_execution(executionArn=execution_arn)
    output: dict[str, Any] = {}
    if execution.get("output"):
        try:
            output = json.loads(execution["output"])
        except json.JSONDecodeError:
            output = {}
    base = {
        "execution_arn": execution_arn,
        "status": execution["status"],
        "redrive_count": execution.get("redriveCount", 0),
        "error": execution.get("error"),
        "cause": execution.get("cause"),
        "output": output,
    }
    runs = sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]
    if not runs:
        return Progress(**base)  # still validating input, or refused it before the map started
    run = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])
    counts = run["itemCounts"]
    return Progress(
        **base,
        map_run_arn=run["mapRunArn"],
        total=counts["total"],
        succeeded=counts["succeeded"],
        failed=counts["failed"] + counts["timedOut"] + counts["aborted"],
        running=counts["running"],
        pending=counts["pending"],
    )


class RateMeter:
    """Items per second over a sliding window of (time, processed) samples."""

    def __init__(self, window_seconds: float = DEFAULT_RATE_WINDOW_SECONDS) -> None:
        self.window_seconds = window_seconds
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, processed: int) -> None:
        self._samples.append((at, processed))
        while len(self._samples) > 2 and at - self._samples[1][0] >= self.window_seconds:
            self._samples.popleft()

    @property
    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return max(n1 - n0, 0) / (t1 - t0)


def format_duration(duration: float) -> str:
    seconds = round(duration)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def render(progress: Progress, rate: float | None, width: int = BAR_WIDTH) -> str:
    """`[#######-------] 23.4%  1,234 processed · 5 failed · 4,000 remaining · 12.3/s · ETA 5m25s  RUNNING`"""
    if progress.map_run_arn is None:
        return f"{progress.status}: waiting for the map run to start (input check, first listing page)"
    total = progress.total
    fraction = (progress.succeeded + progress.failed) / total if total else 0.0
    filled = int(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    parts = [
        f"[{bar}] {fraction * 100:5.1f}%",
        f"{progress.succeeded:,} processed",
        f"{progress.failed:,} failed",
        f"{progress.remaining:,} remaining",
    ]
    if rate is not None:
        parts.append(f"{rate:,.1f}/s")
        if progress.remaining and rate > 0 and not progress.done:
            parts.append(f"ETA {format_duration(progress.remaining / rate)}")
    return " · ".join(parts) + f"  {progress.status}"


def summary_lines(progress: Progress) -> list[str]:
    """What an ended backfill left: counts, errors and where its failed batches are."""
    lines = [f"execution {progress.execution_arn}: {progress.status}"]
    if progress.map_run_arn:
        lines.append(
            f"items: {progress.total:,} total, {progress.succeeded:,} processed, {progress.failed:,} failed"
        )
    if progress.error:
        lines.append(f"error: {progress.error}: {progress.cause or ''}".rstrip(": "))
    details = progress.output.get("map", {}).get("ResultWriterDetails") if progress.output else None
    if details:
        lines.append(
            f"results: s3://{details['Bucket']}/{details['Key']} (FAILED_*.json lists the failed batches)"
        )
    if progress.failed and progress.status == "SUCCEEDED":
        # Step Functions redrives only executions that did not succeed; a new start skips finished photos.
        lines.append("retry the failed items: start the same prefix/manifest again (finished photos are skipped)")
    elif progress.done and progress.status != "SUCCEEDED":
        lines.append(f"retry the failed batches: python -m tools.backfill redrive {progress.execution_arn}")
    return lines
