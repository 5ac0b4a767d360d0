"""Tables and JSON for the three reports: backlog, traffic (both modes), volumes, sizing."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tools.cost.backlog import (
    A10G_TOKENS_PER_SECOND,
    ASSUMED,
    BLOG_SLOWEST_SECONDS_PER_1000,
    PESSIMISTIC_FACTOR,
    PRICES_SOURCE,
    SEED_SECONDS_PER_1000,
    SEED_TOKENS_PER_PHOTO,
    Estimate,
)
from tools.cost.tokens import GPT4O_USD_PER_M_INPUT, GPT4O_USD_PER_M_OUTPUT

_NOTE_WIDTH = 110  # characters
_COLUMNS = ("configuration", "tokens/photo", "photos/h/inst", "$/1k photos", "backlog hours", "backlog cost")


def render_table(result: Estimate) -> str:
    header = (
        f"Labelling {result.photos:,} photos; sizes: {result.size_source}; sent at <= {result.max_side} px; "
        f"prompt with {result.labels} labels"
    )
    lines = [textwrap.fill(header, _NOTE_WIDTH), ""]
    table = [_COLUMNS]
    for row in result.rows:
        table.append(
            (
                row.label,
                f"{row.tokens_per_photo:,.0f}",
                "-" if row.photos_per_hour_per_instance is None else f"{row.photos_per_hour_per_instance:,.0f}",
                f"{row.usd_per_1000:,.3f}",
                "-" if row.hours is None else _figure(row.hours),
                "$" + _figure(row.total_usd),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]
    for index, cells in enumerate(table):
        first = cells[0].ljust(widths[0])
        rest = "  ".join(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        lines.append(f"{first}  {rest}")
        if index == 0:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    unmeasured = sorted({r.instance_type for r in result.rows if r.speed_basis == ASSUMED})
    notes = [
        f"Throughput: {A10G_TOKENS_PER_SECOND:,.0f} tokens/s per A10G, calibrated on the seed "
        f"({SEED_SECONDS_PER_1000:g} s / 1,000 photos at {SEED_TOKENS_PER_PHOTO:,} tokens). "
        f"Pessimistic (blog repo, {BLOG_SLOWEST_SECONDS_PER_1000:g} s / 1,000): hours and cost "
        f"x{PESSIMISTIC_FACTOR:.2f}.",
        f"Prices: {PRICES_SOURCE}, read {result.assumptions.get('prices_as_of')}; override with "
        f"--price-per-hour. GPT-4o: "
        f"${GPT4O_USD_PER_M_INPUT:.2f} / ${GPT4O_USD_PER_M_OUTPUT:.2f} per M input/output tokens; API rate limits "
        "not modelled.",
        "Prefix caching cannot help: the image comes before the prompt text in LLaVA-NeXT's chat template.",
    ]
    if unmeasured:
        notes.append(
            f"* Not measured, speed assumed (see --help): {', '.join(unmeasured)}. Measure, then pass "
            "--tokens-per-second."
        )
    if result.unreadable_count:
        notes.append(
            f"{result.unreadable_count:,} sampled files are unreadable and would be REJECTED by the labeller "
            "(not in the figures above); first: " + result.unreadable_examples[0]
        )
    # The table keeps its width; the notes under it wrap for a terminal.
    lines.append("")
    lines += [textwrap.fill(note, _NOTE_WIDTH, subsequent_indent="  ") for note in notes]
    return "\n".join(lines)


def _figure(value: float) -> str:
    # Whole units for backlogs, two decimals where rounding would print 0 for a small one.
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def render_json(result: Estimate) -> str:
    return json.dumps(asdict(result), indent=2)


def wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, _NOTE_WIDTH, subsequent_indent=indent)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return _table(header, rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """First column left-aligned, the rest right-aligned, a rule under the header."""
    table = [tuple(header), *[tuple(r) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for index, cells in enumerate(table):
        rest = "  ".join(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        lines.append(f"{cells[0].ljust(widths[0])}  {rest}".rstrip())
        if index == 0:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    return lines


def _notes(notes: Sequence[str]) -> list[str]:
    return [textwrap.fill(note, _NOTE_WIDTH, subsequent_indent="  ") for note in notes]


def render_json_data(data: Any) -> str:
    return json.dumps(data, indent=2, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if not hasattr(value, "__dataclass_fields__"):
        return str(value)
    fields = asdict(value)
    if hasattr(value, "usd_total"):  # a Scenario: its totals and dominant part too
        fields.update(
            usd_total=value.usd_total, usd_total_per_1000=value.usd_per_1000, dominant=value.dominant.name
        )
    return fields


# -- whole-system reports -----------------------------------------------------------------------------------------

_PART_ORDER = (
    "Endpoint",
    "Labelling job",
    "Lambda duration",
    "Lambda requests",
    "S3 requests",
    "SQS requests",
    "DynamoDB",
    "CloudWatch + X-Ray",
    "SNS",
    "Step Functions",
    "Alarms + dashboard",
    "KMS keys",
)


def _money(value: float) -> str:
    return f"{value:,.2f}" if value >= 0.995 or value == 0 else f"{value:,.4f}"


def _per_1000(value: float) -> str:
    return f"{value:,.3f}" if value >= 0.0995 else f"{value:,.5f}"


def scenario_table(scenarios: Sequence[Any], *, total_label: str) -> list[str]:
    """One row per part, two columns ($ and $/1k) per scenario, totals and the dominant part at the bottom."""
    names = [n for n in _PART_ORDER if any(n in {p.name for p in s.parts} for s in scenarios)]
    header = ["part"]
    for s in scenarios:
        header += [f"{s.mode} {total_label}", "$/1k photos"]
    rows = []
    for name in names:
        row = [name]
        for s in scenarios:
            part = next((p for p in s.parts if p.name == name), None)
            row += ["-", "-"] if part is None else [_money(part.usd_per_month), _per_1000(part.usd_per_1000)]
        rows.append(row)
    total = ["total"]
    dominant = ["dominant part"]
    for s in scenarios:
        total += [_money(s.usd_total), _per_1000(s.usd_per_1000)]
        share = s.dominant.usd_per_month / s.usd_total if s.usd_total else 0.0
        dominant += [s.dominant.name, f"{share:.0%}"]
    rows += [total, dominant]
    return _table(header, rows)


def worst_wait(minutes: float | None) -> str:
    """The worst wait for a label, in the unit a reader thinks in."""
    if minutes is None:
        return "-"
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def _upload_fact(s: Any) -> str:
    wait = f"worst wait for a label {worst_wait(s.worst_minutes)}"
    if s.mode == "scheduled":
        return (
            f"scheduled: {s.instance_hours:.2f} job host-hours a day; {'; '.join(s.notes)}; the labeller is "
            f"billed {s.lambda_seconds_per_photo:.2f} s a photo; {wait}"
        )
    return (
        f"{s.mode}: {s.instance_hours:.1f} instance-hours a day; the labeller is billed "
        f"{s.lambda_seconds_per_photo:.2f} s a photo, {s.waiting_seconds_per_photo:.2f} s of it waiting on the "
        f"endpoint; {wait}"
    )


def render_traffic(report: dict[str, Any]) -> str:
    lines = [textwrap.fill(report["title"], _NOTE_WIDTH), textwrap.fill(report["config"], _NOTE_WIDTH), ""]
    upload = report["upload"]
    lines += scenario_table(upload, total_label="$/month")
    lines.append("")
    lines += _notes([*[_upload_fact(s) for s in upload], report["break_even"]])
    if report.get("backfill"):
        backfill = report["backfill"]
        lines += ["", textwrap.fill(report["backfill_title"], _NOTE_WIDTH), ""]
        lines += scenario_table(backfill, total_label="$ total")
        lines.append("")
        lines += _notes(
            [
                f"{s.mode}: {s.duration_hours:,.0f} hours ({s.duration_hours / 24:,.1f} days) on "
                f"{'; '.join(s.notes)}; {s.instance_hours:,.0f} instance-hours; the labeller is billed "
                f"{s.lambda_seconds_per_photo:.2f} s a photo, {s.waiting_seconds_per_photo:.2f} s of it waiting"
                for s in backfill
            ]
        )
    lines += ["", *_notes(report["notes"])]
    return "\n".join(lines)


def render_volumes(report: dict[str, Any]) -> str:
    header = [
        "photos/day",
        "real-time $/1k",
        "async $/1k",
        "scheduled $/1k",
        "real-time wait",
        "async wait",
        "scheduled wait",
        "cheapest",
    ]
    rows = []
    for row in report["rows"]:
        mark = ("*" if row["raised"] else "") + ("+" if row["scheduled_raised"] else "")
        rows.append(
            [
                f"{row['photos_per_day']:,.0f}{mark}",
                _per_1000(row["real_time_per_1000"]),
                _per_1000(row["async_per_1000"]),
                _per_1000(row["scheduled_per_1000"]),
                worst_wait(row["real_time_worst_minutes"]),
                worst_wait(row["async_worst_minutes"]),
                worst_wait(row["scheduled_worst_minutes"]),
                row["cheapest"],
            ]
        )
    lines = [textwrap.fill(report["title"], _NOTE_WIDTH), ""]
    lines += _table(header, rows)
    lines += ["", *_notes(report["notes"])]
    return "\n".join(lines)


def render_sizing(report: dict[str, Any]) -> str:
    lines = [textwrap.fill(report["title"], _NOTE_WIDTH), ""]
    lines += _notes(report["memory"])
    lines.append("")
    header = ["in flight / instance", "throughput", "waiting s/photo", "Lambda $/1k"]
    rows = [
        [
            str(r.per_instance),
            f"{r.throughput_share:.0%}",
            f"{r.waiting_seconds:.2f}",
            _per_1000(r.lambda_usd_per_1000),
        ]
        for r in report["in_flight"]
    ]
    lines += _table(header, rows)
    lines.append("")
    lines += _table(
        ["setting", "configured", "recommended"],
        [[r.key, r.configured, r.recommended] for r in report["recommendations"]],
    )
    lines.append("")
    lines += _notes([f"{r.key}: {r.reason}." for r in report["recommendations"]])
    return "\n".join(lines)
