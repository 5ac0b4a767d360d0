"""The whole-system reports: `traffic`, `volumes`, `sizing` (python -m tools.cost_estimate <report> --help)."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from classification.contract import InvalidTaxonomy, Taxonomy
from classification.image_tokens import DEFAULT_PROFILE, GRID_PINPOINTS
from tools.cost import fleet, render, sizing, system
from tools.cost import prices as price_list
from tools.cost import settings as settings_module
from tools.cost.backlog import A10G_TOKENS_PER_SECOND, INSTANCE_TYPES, SINGLE_STREAM_FACTOR
from tools.cost.fleet import CapacityError, Performance
from tools.cost.inputs import (
    DEFAULT_SIZE,
    EstimateError,
    PhotoSize,
    SizeMix,
    argument,
    non_negative_float,
    parse_count,
    parse_size,
    positive_float,
)
from tools.cost.prices import PriceError
from tools.cost.settings import Settings, SettingsError
from tools.cost.tokens import llava_tokens

DOC = "docs/cost-model.md"
COMMANDS = ("traffic", "volumes", "sizing")
DEFAULT_VOLUMES = ("1k", "10k", "100k", "300k", "1M")


def _parser(command: str) -> argparse.ArgumentParser:
    descriptions = {
        "traffic": "What the whole system costs a month at your upload volume, real-time vs asynchronous "
        "endpoint, part by part, which part dominates and where the two modes break even; optionally a backfill.",
        "volumes": "$ per 1,000 photos by daily upload volume for both endpoint modes (the README's table).",
        "sizing": "The Lambda memory and requests in flight the measurements support, with the reasoning.",
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
    if command in ("traffic", "volumes"):
        curve = parser.add_mutually_exclusive_group()
        curve.add_argument(
            "--hourly",
            nargs=24,
            type=argument(non_negative_float),
            metavar="W",
            help="24 relative upload weights, 00:00-01:00 first (default: flat)",
        )
        curve.add_argument(
            "--curve-file", type=Path, help="a file with the 24 hourly weights (JSON list, or numbers on lines)"
        )
    parser.add_argument("--config", type=Path, default=settings_module.CDK_JSON, help="cdk.json to read")
    parser.add_argument(
        "--profile",
        choices=list(GRID_PINPOINTS),
        default=DEFAULT_PROFILE,
        help=f"image-token profile the deployed model uses (default {DEFAULT_PROFILE}, the training default)",
    )
    parser.add_argument(
        "--size",
        action="append",
        type=argument(parse_size),
        metavar="WxH[:WEIGHT]",
        help=f"a photo size and its share, repeatable (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})",
    )
    parser.add_argument(
        "--tokens-per-second", type=argument(positive_float), help="measured throughput of one instance"
    )
    parser.add_argument("--price-per-hour", type=argument(positive_float), help="real-time $/instance-hour")
    parser.add_argument("--async-price-per-hour", type=argument(positive_float), help="async $/instance-hour")
    parser.add_argument(
        "--cold-start-minutes",
        type=argument(non_negative_float),
        default=fleet.COLD_START_MINUTES,
        help=f"a new instance's billed start-up (default {fleet.COLD_START_MINUTES:g}, assumed)",
    )
    parser.add_argument(
        "--async-idle-minutes",
        type=argument(non_negative_float),
        default=fleet.ASYNC_IDLE_MINUTES,
        help=f"idle time before an async endpoint reaches 0 instances (default {fleet.ASYNC_IDLE_MINUTES:g})",
    )
    parser.add_argument("--arm64", action="store_true", help="price the Lambdas on arm64 (20 %% cheaper GB-s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(command: str, argv: list[str], out: TextIO, err: TextIO) -> int:
    parser = _parser(command)
    args = parser.parse_args(argv)
    try:
        context = _Context.build(args)
        report = {"traffic": _traffic, "volumes": _volumes, "sizing": _sizing}[command](args, context)
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
        }
        out.write(renderer[command](report) + "\n")
    return 0


@dataclass(frozen=True)
class _Context:
    """What every system report needs: settings, performance, prices, assumptions, the daily curve."""

    settings: Settings
    perf: Performance
    prices: price_list.Prices
    real_time_price: float
    async_price: float
    assumptions: fleet.Assumptions
    curve: list[float] | None
    profile: str
    tokens: float

    @classmethod
    def build(cls, args: argparse.Namespace) -> _Context:
        from classification.images import MAX_SIDE

        settings = settings_module.load(args.config)
        prices = price_list.load()
        sizes = (
            SizeMix(tuple(args.size), "--size") if args.size else SizeMix((PhotoSize(*DEFAULT_SIZE),), "default")
        )
        tokens = llava_tokens(sizes, args.profile, Taxonomy.load(), max_side=MAX_SIDE).total
        perf = performance(tokens, settings.instance_type, args.tokens_per_second)
        return cls(
            settings=settings,
            perf=perf,
            prices=prices,
            real_time_price=args.price_per_hour or prices.instance_hour(settings.instance_type, "real_time"),
            async_price=args.async_price_per_hour or prices.instance_hour(settings.instance_type, "async"),
            assumptions=fleet.Assumptions(
                cold_start_minutes=args.cold_start_minutes,
                async_idle_minutes=args.async_idle_minutes,
                architecture="arm64" if args.arm64 else "x86_64",
            ),
            curve=_curve(args),
            profile=args.profile,
            tokens=tokens,
        )

    def upload(self, mode: str, per_day: float, settings: Settings | None = None) -> system.Scenario:
        return system.upload_scenario(
            mode=mode,
            photos_per_day=per_day,
            curve=self.curve,
            perf=self.perf,
            settings=settings or self.settings,
            prices=self.prices,
            instance_price=self.real_time_price if mode == system.REAL_TIME else self.async_price,
            assumptions=self.assumptions,
        )

    def describe(self) -> str:
        s = self.settings
        return (
            f"Config: {s.instance_type}, {s.min_capacity}..{s.max_capacity} instances, target "
            f"{s.target_in_flight:g} in flight, scale-in cooldown {s.scale_in_cooldown_seconds} s; uploads: batch "
            f"{s.upload_batch_size}, {s.upload_max_concurrency} in flight, {s.upload_memory_mb} MB; backfill: "
            f"{s.backfill_items_per_batch} a batch, {s.backfill_max_concurrency} in flight, "
            f"{s.backfill_memory_mb} MB. {self.profile} profile, {self.tokens:,.0f} tokens a photo: "
            f"{self.perf.seconds_per_photo:.3f} s a photo saturated, {self.perf.unloaded_latency:.2f} s unloaded. "
            f"${self.real_time_price:g}/h real-time, ${self.async_price:g}/h async, prices read "
            f"{self.prices.read_on}; Lambda {self.assumptions.architecture}."
        )


def performance(tokens_per_photo: float, instance_type: str, tokens_per_second: float | None) -> Performance:
    """One instance's time per photo from the token model (backlog.py); unloaded latency x1.71 (blog repo)."""
    speed = INSTANCE_TYPES[instance_type].relative_speed if instance_type in INSTANCE_TYPES else 1.0
    tps = tokens_per_second or A10G_TOKENS_PER_SECOND * speed
    seconds = tokens_per_photo / tps
    return Performance(seconds_per_photo=seconds, unloaded_latency=seconds * SINGLE_STREAM_FACTOR)


def _curve(args: argparse.Namespace) -> list[float] | None:
    if getattr(args, "hourly", None):
        values = list(args.hourly)
    elif getattr(args, "curve_file", None):
        values = read_curve(args.curve_file)
    else:
        return None
    if sum(values) <= 0:
        raise EstimateError("the daily curve is all zeros: at least one hour must have uploads")
    return values


def read_curve(path: Path) -> list[float]:
    """24 hourly weights from a JSON list or whitespace/comma-separated numbers."""
    try:
        text = path.read_text()
    except OSError as error:
        raise EstimateError(f"cannot read --curve-file {path}: {error}") from error
    try:
        data = json.loads(text)
        values = data if isinstance(data, list) else None
    except json.JSONDecodeError:
        values = text.replace(",", " ").split()
    if values is None:
        raise EstimateError(f"--curve-file {path}: expected a JSON list of 24 numbers")
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise EstimateError(f"--curve-file {path}: every value must be a number") from None
    if len(numbers) != 24 or any(n < 0 or math.isinf(n) or math.isnan(n) for n in numbers):
        raise EstimateError(f"--curve-file {path}: expected 24 non-negative numbers, got {len(numbers)} values")
    return numbers


def _curve_name(context: _Context) -> str:
    return "flat" if context.curve is None else "hourly curve " + " ".join(f"{w:g}" for w in context.curve)


def _traffic(args: argparse.Namespace, context: _Context) -> dict[str, Any]:
    per_day = float(args.per_day)
    upload = [context.upload(mode, per_day) for mode in system.MODES]
    break_even_text, crossings = _break_even_text(context, upload)
    report: dict[str, Any] = {
        "title": f"Upload traffic: {per_day:,.0f} photos a day ({_curve_name(context)}), "
        f"{per_day * system.DAYS_PER_MONTH:,.0f} a month of {system.DAYS_PER_MONTH:.1f} days.",
        "config": context.describe(),
        "upload": upload,
        "break_even": break_even_text,
        "break_even_photos_per_day": crossings,
        "notes": _notes(context),
    }
    if args.backfill:
        report["backfill_title"] = f"Backfill: {args.backfill:,} photos once, through the backfill's own Lambda."
        report["backfill"] = [
            system.backfill_scenario(
                mode=mode,
                photos=float(args.backfill),
                perf=context.perf,
                settings=context.settings,
                prices=context.prices,
                instance_price=context.real_time_price if mode == system.REAL_TIME else context.async_price,
                assumptions=context.assumptions,
            )
            for mode in system.MODES
        ]
    return report


def _total_cost(context: _Context, mode: str) -> Callable[[float], float]:
    return lambda volume: context.upload(mode, volume, fit_settings(context, volume)[0]).usd_total


def _break_even_text(context: _Context, upload: list[system.Scenario]) -> tuple[str, list[float]]:
    """Where the two modes cross, and the volume ranges where one is clearly cheaper, for this curve's shape."""
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
    crossing_text = ", ".join(f"{c:,.0f}" for c in crossings) or "none"
    return (
        f"At this volume {cheaper} is cheaper by ${gap:,.2f} a month "
        f"({gap / max(real_time.usd_total, 1e-9):.1%}). "
        f"Break-even (photos a day, this curve's shape, fleets raised to keep up): {crossing_text}. By range: "
        f"{ranges}.",
        crossings,
    )


def fit_settings(context: _Context, per_day: float) -> tuple[Settings, bool]:
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


def _volumes(args: argparse.Namespace, context: _Context) -> dict[str, Any]:
    rows = []
    for volume in args.volumes:
        fitted, raised = fit_settings(context, float(volume))
        real_time = context.upload(system.REAL_TIME, float(volume), fitted)
        asynchronous = context.upload(system.ASYNC, float(volume), fitted)
        rows.append(
            {
                "photos_per_day": volume,
                "raised": raised,
                "max_capacity": fitted.max_capacity,
                "upload_max_concurrency": fitted.upload_max_concurrency,
                "real_time_per_1000": real_time.usd_per_1000,
                "async_per_1000": asynchronous.usd_per_1000,
                "real_time_per_month": real_time.usd_total,
                "async_per_month": asynchronous.usd_total,
                "real_time_dominant": real_time.dominant.name,
                "async_dominant": asynchronous.dominant.name,
                "cheaper": "async" if asynchronous.usd_total < real_time.usd_total else "real-time",
            }
        )
    notes = [context.describe()]
    raised = [r for r in rows if r["raised"]]
    if raised:
        notes.append(
            "* above what the configured fleet serves: priced with endpoint.max_capacity and "
            "upload.max_concurrency raised to keep up ("
            + "; ".join(
                f"{r['photos_per_day']:,}: {r['max_capacity']} instances, {r['upload_max_concurrency']} in flight"
                for r in raised
            )
            + ")."
        )
    _, crossings = _break_even_text(context, [context.upload(m, float(args.volumes[0])) for m in system.MODES])
    costs = {mode: _total_cost(context, mode) for mode in system.MODES}
    notes.append(
        "Where each mode is cheaper (photos a day): "
        + "; ".join(
            f"{first:,.0f}-{last:,.0f}: "
            + {"even": "within 1 %", "n/a": "a fleet cannot keep up"}.get(verdict, f"{verdict} by > 1 %")
            for first, last, verdict in system.regimes(costs)
        )
        + ". Exact crossings: "
        + (", ".join(f"{c:,.0f}" for c in crossings) or "none")
        + "."
    )
    notes += _notes(context)
    return {
        "title": f"$ per 1,000 photos by daily upload volume ({_curve_name(context)}); a month is "
        f"{system.DAYS_PER_MONTH:.1f} days.",
        "rows": rows,
        "notes": notes,
        "break_even_photos_per_day": crossings,
    }


def _sizing(args: argparse.Namespace, context: _Context) -> dict[str, Any]:
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


def _notes(context: _Context) -> list[str]:
    a = context.assumptions
    return [
        f"Assumed: a new instance is billed {a.cold_start_minutes:g} min while it loads; an idle async endpoint "
        f"reaches 0 instances after {a.async_idle_minutes:g} min; target tracking holds utilisation at T/(T+1) = "
        f"{fleet.utilisation_at_target(context.settings.target_in_flight):.0%}. Free tiers not subtracted. "
        f"Details and sources: {DOC}; prices: tools/cost/prices.json.",
    ]
