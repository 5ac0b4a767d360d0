"""The whole-system reports: `traffic`, `volumes`, `sizing`, `scheduled` (python -m tools.cost_estimate <report>
--help). Real-time, async and scheduled mode side by side; the scheduled mode's own report is scheduled_report.py.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TextIO

from classification.contract import InvalidTaxonomy
from tools.cost import fleet, render, scheduled_report, sizing, system
from tools.cost.backlog import SINGLE_STREAM_FACTOR
from tools.cost.context import DOC, Context, add_common_options, add_curve_options, curve_name, notes
from tools.cost.fleet import CapacityError
from tools.cost.inputs import EstimateError, argument, parse_count
from tools.cost.job import JobCapacityError
from tools.cost.prices import PriceError
from tools.cost.settings import Settings, SettingsError

COMMANDS = ("traffic", "volumes", "sizing", "scheduled")
DEFAULT_VOLUMES = ("1k", "10k", "100k", "300k", "1M")
MODE_LABELS = {system.REAL_TIME: "real-time", system.ASYNC: "async", system.SCHEDULED: "scheduled"}


def _parser(command: str) -> argparse.ArgumentParser:
    descriptions = {
        "traffic": "What the whole system costs a month at your upload volume, real-time vs asynchronous "
        "endpoint vs scheduled windows, part by part, which part dominates and where the endpoint modes break "
        "even; optionally a backfill.",
        "volumes": "$ per 1,000 photos by daily upload volume and the worst wait for a label, for the three "
        "labelling modes (the README's and docs/cost.md's table).",
        "sizing": "The Lambda memory and requests in flight the measurements support, with the reasoning.",
        "scheduled": "Scheduled mode in detail: start-up per window, Spot and on-demand, 6-hour and daily "
        "windows, issue 18's targets, the backfill on the job and the hosts a deadline needs.",
    }
    parser = argparse.ArgumentParser(
        prog=f"python -m tools.cost_estimate {command}",
        description=descriptions[command],
        epilog=f"How the figures are made, every assumption and its source: {DOC}.",
    )
    if command == "traffic":
        parser.add_argument(
            "--per-day", required=True, type=argument(parse_count), help="photos uploaded a day (10000, 10k, 1.5M)"
        )
        parser.add_argument(
            "--backfill", type=argument(parse_count), help="also cost a backlog of this many photos"
        )
    if command == "volumes":
        parser.add_argument(
            "--volumes",
            nargs="+",
            type=argument(parse_count),
            default=[parse_count(v) for v in DEFAULT_VOLUMES],
            metavar="N",
            help=f"photos a day (default {' '.join(DEFAULT_VOLUMES)})",
        )
    if command == "scheduled":
        scheduled_report.add_options(parser)
    if command in ("traffic", "volumes", "scheduled"):
        add_curve_options(parser)
    add_common_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(command: str, argv: list[str], out: TextIO, err: TextIO) -> int:
    parser = _parser(command)
    args = parser.parse_args(argv)
    handlers = {"traffic": _traffic, "volumes": _volumes, "sizing": _sizing, "scheduled": scheduled_report.report}
    try:
        context = Context.build(args)
        report = handlers[command](args, context)
    except (EstimateError, InvalidTaxonomy, SettingsError, PriceError, CapacityError, ValueError) as error:
        parser.print_usage(err)
        err.write(f"{parser.prog}: error: {error}\n")
        return 2
    if args.json:
        out.write(render.render_json_data(report) + "\n")
    else:
        renderer = {
            "traffic": render.render_traffic,
            "volumes": render.render_volumes,
            "sizing": render.render_sizing,
            "scheduled": scheduled_report.render,
        }
        out.write(renderer[command](report) + "\n")
    return 0


def _traffic(args: argparse.Namespace, context: Context) -> dict[str, Any]:
    per_day = float(args.per_day)
    upload = [context.upload(mode, per_day) for mode in system.MODES]
    try:
        upload.append(context.upload(system.SCHEDULED, per_day))
    except JobCapacityError as error:
        scheduled_note = f"Scheduled mode: {error}."
    else:
        scheduled_note = f"Scheduled: {'; '.join(upload[-1].notes)}."
    break_even_text, crossings = _break_even_text(context, upload[:2])
    report: dict[str, Any] = {
        "title": f"Upload traffic: {per_day:,.0f} photos a day ({curve_name(context)}), "
        f"{per_day * system.DAYS_PER_MONTH:,.0f} a month of {system.DAYS_PER_MONTH:.1f} days.",
        "config": context.describe(),
        "upload": upload,
        "break_even": break_even_text,
        "break_even_photos_per_day": [c.photos_per_day for c in crossings if c.step is None],
        "fleet_steps": [c for c in crossings if c.step is not None],
        "notes": [scheduled_note, *notes(context)],
    }
    if args.backfill:
        report["backfill_title"] = f"Backfill: {args.backfill:,} photos once, through the backfill's own Lambda."
        report["backfill"] = [context.backfill(mode, float(args.backfill)) for mode in system.ALL_MODES]
    return report


def _total_cost(context: Context, mode: str) -> Callable[[float], float]:
    return lambda volume: context.upload(mode, volume, fit_settings(context, volume)[0]).usd_total


def _break_even_text(context: Context, upload: list[system.Scenario]) -> tuple[str, list[system.Crossing]]:
    """Where the two endpoint modes cross, where a fleet's step swaps them, and the ranges where one is clearly
    cheaper, for this curve's shape."""
    costs = {mode: _total_cost(context, mode) for mode in system.MODES}
    crossings = system.break_even(costs)
    real_time, asynchronous = upload
    cheaper = "async" if asynchronous.usd_total < real_time.usd_total else "real-time"
    gap = abs(real_time.usd_total - asynchronous.usd_total)
    ranges = "; ".join(
        f"{first:,.0f}-{last:,.0f}: "
        + {"even": "within 1 %", "n/a": "a fleet cannot keep up"}.get(verdict, f"{verdict} cheaper by > 1 %")
        for first, last, verdict in system.regimes(costs)
    )
    return (
        f"At this volume {cheaper} is cheaper by ${gap:,.2f} a month "
        f"({gap / max(real_time.usd_total, 1e-9):.1%}). {crossing_text(crossings)} By range: {ranges}.",
        crossings,
    )


def crossing_text(crossings: list[system.Crossing]) -> str:
    """True break-evens, then the fleet steps that swap the two modes without their bills ever being equal."""
    true = [c for c in crossings if c.step is None]
    steps = [c for c in crossings if c.step is not None]
    text = (
        "Break-even (photos a day, this curve's shape, fleets raised to keep up): "
        + (", ".join(f"{c.photos_per_day:,.0f}" for c in true) or "none")
        + "."
    )
    if steps:
        text += (
            " Not break-evens: "
            + "; ".join(
                f"at {c.photos_per_day:,.0f} the {MODE_LABELS[c.step]} fleet steps "
                f"({c.jump_usd:+,.0f} $ a month) and the cheaper mode swaps"
                for c in steps
            )
            + "."
        )
    return text


def fit_settings(context: Context, per_day: float) -> tuple[Settings, bool]:
    """The configured settings, or the smallest max_capacity (and upload concurrency to drive it) that keeps up
    with `per_day` on the busiest hour; True when raised."""
    s = context.settings
    weights = context.curve or [1.0] * 24
    peak = per_day * max(weights) / sum(weights) / 3600
    rho = fleet.utilisation_at_target(s.target_in_flight)
    needed = math.ceil(peak / (context.perf.photos_per_second * rho) - 1e-9)
    if needed <= fleet.upload_ceiling(s):
        return s, False
    capacity = max(needed, s.max_capacity)
    concurrency = max(s.upload_max_concurrency, math.ceil(capacity * s.target_in_flight))
    return replace(s, max_capacity=capacity, upload_max_concurrency=concurrency), True


def fit_scheduled(context: Context, per_day: float) -> tuple[Settings, bool]:
    """The configured settings, or scheduled.max_hosts doubled until the windows keep up; True when raised."""
    settings = context.settings
    hosts = settings.scheduled.max_hosts
    while True:
        candidate = replace(settings, scheduled=replace(settings.scheduled, max_hosts=hosts))
        try:
            context.upload(system.SCHEDULED, per_day, candidate)
        except JobCapacityError:
            hosts *= 2
            continue
        return candidate, hosts != settings.scheduled.max_hosts


def _volumes(args: argparse.Namespace, context: Context) -> dict[str, Any]:
    rows = []
    for volume in args.volumes:
        fitted, raised = fit_settings(context, float(volume))
        fitted_job, raised_job = fit_scheduled(context, float(volume))
        scenarios = {
            system.REAL_TIME: context.upload(system.REAL_TIME, float(volume), fitted),
            system.ASYNC: context.upload(system.ASYNC, float(volume), fitted),
            system.SCHEDULED: context.upload(system.SCHEDULED, float(volume), fitted_job),
        }
        cheapest = min(scenarios, key=lambda m: scenarios[m].usd_total)
        row: dict[str, Any] = {
            "photos_per_day": volume,
            "raised": raised,
            "max_capacity": fitted.max_capacity,
            "upload_max_concurrency": fitted.upload_max_concurrency,
            "scheduled_raised": raised_job,
            "scheduled_max_hosts": fitted_job.scheduled.max_hosts,
            "cheapest": MODE_LABELS[cheapest],
        }
        for mode, scenario in scenarios.items():
            key = mode.replace("-", "_")
            row[f"{key}_per_1000"] = scenario.usd_per_1000
            row[f"{key}_per_month"] = scenario.usd_total
            row[f"{key}_worst_minutes"] = scenario.worst_minutes
            row[f"{key}_dominant"] = scenario.dominant.name
        rows.append(row)
    notes_ = [context.describe()]
    raised_rows = [r for r in rows if r["raised"]]
    if raised_rows:
        notes_.append(
            "* above what the configured endpoint fleet serves: priced with endpoint.max_capacity and "
            "upload.max_concurrency raised to keep up ("
            + "; ".join(
                f"{r['photos_per_day']:,}: {r['max_capacity']} instances, {r['upload_max_concurrency']} in flight"
                for r in raised_rows
            )
            + ")."
        )
    raised_jobs = [r for r in rows if r["scheduled_raised"]]
    if raised_jobs:
        notes_.append(
            "+ above what scheduled.max_hosts serves: priced with it raised ("
            + "; ".join(f"{r['photos_per_day']:,}: {r['scheduled_max_hosts']} hosts" for r in raised_jobs)
            + ")."
        )
    costs = {mode: _total_cost(context, mode) for mode in system.MODES}
    crossings = system.break_even(costs)
    notes_.append(
        "Real-time vs async (photos a day): "
        + "; ".join(
            f"{first:,.0f}-{last:,.0f}: "
            + {"even": "within 1 %", "n/a": "a fleet cannot keep up"}.get(verdict, f"{verdict} by > 1 %")
            for first, last, verdict in system.regimes(costs)
        )
        + ". "
        + crossing_text(crossings)
    )
    notes_ += [
        "Worst wait: the longest a photo uploaded at the modelled traffic waits for its label (real-time: a batch "
        "of records in turn; async: the backlog target ahead of it, plus a start from zero where the endpoint "
        "reaches zero; scheduled: the time to the next window and its job, plus scheduled.spot_wait_minutes).",
        *notes(context),
    ]
    return {
        "title": f"$ per 1,000 photos by daily upload volume ({curve_name(context)}); a month is "
        f"{system.DAYS_PER_MONTH:.1f} days.",
        "rows": rows,
        "notes": notes_,
        "break_even_photos_per_day": [c.photos_per_day for c in crossings if c.step is None],
        "fleet_steps": [c for c in crossings if c.step is not None],
    }


def _sizing(args: argparse.Namespace, context: Context) -> dict[str, Any]:
    sized = sizing.memory(context.settings)
    perf = context.perf
    memory_notes = [
        f"Lambda memory: peak = {sizing.RUNTIME_OVERHEAD_MB:g} MB runtime (assumed) + "
        f"{sizing.IMPORT_BASELINE_MB:g} MB imports and clients (measured) + "
        f"{sizing.MAX_OBJECT_MB:g} MB object held + "
        f"{sizing.DECODE_PEAK_MB_12MP:g} MB decode of a 12-MP RGBA PNG (bench_normalize.py) scaled to the "
        f"{sizing.DECODE_LIMIT_MEGAPIXELS:g}-MP pixel guard = {sized.peak_mb:.0f} MB; x{sizing.MEMORY_MARGIN} and "
        f"rounded up to {sizing.MEMORY_STEP_MB} MB = {sized.recommended_mb} MB (configured "
        f"{sized.configured_mb} MB). A typical 12-MP JPEG peaks at ~"
        f"{sizing.RUNTIME_OVERHEAD_MB + sizing.IMPORT_BASELINE_MB + 3 + 21.6:.0f} MB.",
        f"Endpoint, {context.profile} profile: {perf.seconds_per_photo:.3f} s a photo saturated, "
        f"{perf.unloaded_latency:.2f} s for a request alone (x{SINGLE_STREAM_FACTOR:.2f}, blog repo's single-"
        f"threaded run). One instance saturates at >= {perf.saturating_in_flight:.2f} requests in flight "
        "(asymptotic bound); beyond that each extra request only waits. Table: one instance, configured memory.",
    ]
    return {
        "title": "Sizing the defaults from measurements",
        "memory": memory_notes,
        "memory_sizing": sized,
        "in_flight": sizing.in_flight(perf, context.settings, context.prices),
        "recommendations": sizing.recommendations(perf, context.settings),
    }
