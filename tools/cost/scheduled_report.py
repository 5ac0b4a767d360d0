"""`python -m tools.cost_estimate scheduled`: scheduled mode's start-up, windows, Spot vs on-demand, issue 18's
targets with what would reach a missed one, and the backfill on the job with the hosts a deadline needs."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from tools.cost import system
from tools.cost.backlog import PROFILE_TIME_RATIO
from tools.cost.context import Context
from tools.cost.fixed import SCHEDULED, fixed_parts
from tools.cost.inputs import argument, parse_count, positive_float, positive_int
from tools.cost.job import hosts_for_deadline
from tools.cost.render import table, wrap
from tools.cost.startup import default_start_up

DEFAULT_PER_DAY = ("10k", "100k")
DEFAULT_WINDOWS = (6.0, 24.0)
DEFAULT_BACKFILL = "20M"
BACKFILL_HOSTS = (4, 8, 16, 32)


@dataclass(frozen=True)
class Target:
    label: str
    per_day: float
    window_hours: float
    spot: bool
    usd_per_1000: float


# Issue 18's targets, whole-system $ per 1,000 photos (uploads spread over the day).
TARGETS = (
    Target("10,000 a day on Spot, 6-hour windows", 10_000, 6, True, 0.13),
    Target("10,000 a day on Spot, daily windows", 10_000, 24, True, 0.10),
    Target("10,000 a day on-demand, 6-hour windows", 10_000, 6, False, 0.30),
    Target("100,000 a day on Spot, 6-hour windows", 100_000, 6, True, 0.09),
)
BACKFILL_TARGET = (20_000_000, 2_500.0)  # photos, USD on Spot


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--per-day",
        nargs="+",
        type=argument(parse_count),
        default=[parse_count(v) for v in DEFAULT_PER_DAY],
        metavar="N",
        help=f"photos uploaded a day (default {' '.join(DEFAULT_PER_DAY)})",
    )
    parser.add_argument(
        "--windows",
        nargs="+",
        type=argument(positive_float),
        default=list(DEFAULT_WINDOWS),
        metavar="HOURS",
        help="hours between regular windows to compare (default 6 24)",
    )
    parser.add_argument(
        "--backfill",
        type=argument(parse_count),
        default=parse_count(DEFAULT_BACKFILL),
        help=f"a backlog to label on the job (default {DEFAULT_BACKFILL})",
    )
    parser.add_argument(
        "--backfill-hosts",
        type=argument(positive_int),
        help="max hosts a backfill window uses (default scheduled.max_hosts)",
    )
    parser.add_argument(
        "--deadline-days",
        type=argument(positive_float),
        help="answer: how many hosts label the backfill within this many days, and at what cost",
    )


def _variant(context: Context, per_day: float, window_hours: float, spot: bool, **changes: Any) -> system.Scenario:
    varied = context.with_job(window_interval_hours=window_hours, use_spot=spot, **changes)
    return varied.upload(system.SCHEDULED, per_day)


def _row(label: str, scenario: system.Scenario) -> dict[str, Any]:
    job = next(p for p in scenario.parts if p.name == "Labelling job")
    return {
        "label": label,
        "usd_per_1000": scenario.usd_per_1000,
        "usd_per_month": scenario.usd_total,
        "job_per_1000": job.usd_per_1000,
        "job_basis": job.basis,
        "worst_minutes": scenario.worst_minutes,
        "notes": scenario.notes,
    }


def _discount_needed(context: Context, target: Target) -> float | None:
    """The Spot discount at which the target is met, everything else as configured (None: not even at 99 %)."""

    def cost(discount: float) -> float:
        return _variant(context, target.per_day, target.window_hours, True, spot_discount=discount).usd_per_1000

    if cost(0.99) > target.usd_per_1000:
        return None
    low, high = 0.0, 0.99
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if cost(middle) > target.usd_per_1000 else (low, middle)
    return high


def _levers(context: Context, target: Target) -> list[dict[str, Any]]:
    compact = context.job.seconds_per_photo * PROFILE_TIME_RATIO["compact"] / PROFILE_TIME_RATIO[context.profile]
    eager = default_start_up(enforce_eager=True)
    one_host = context.settings.scheduled.max_job_minutes
    variants: list[tuple[str, dict[str, Any]]] = [
        ("compact profile (x0.55 time a photo)", {"seconds_per_photo": compact}),
        ("enforce_eager engine", {"start_up": eager}),
        (f"one host while it fits (target_job_minutes {one_host})", {"target_job_minutes": one_host}),
        ("photos_per_shard 500", {"photos_per_shard": 500}),
        (
            "all four",
            {
                "seconds_per_photo": compact,
                "start_up": eager,
                "target_job_minutes": one_host,
                "photos_per_shard": 500,
            },
        ),
    ]
    rows = []
    for label, changes in variants:
        scenario = _variant(context, target.per_day, target.window_hours, target.spot, **changes)
        rows.append({"lever": label, "usd_per_1000": scenario.usd_per_1000})
    return rows


def report(args: argparse.Namespace, context: Context) -> dict[str, Any]:
    grid = []
    for per_day in args.per_day:
        for hours in args.windows:
            for spot in (True, False):
                label = f"{per_day:,} a day, every {hours:g} h, {'Spot' if spot else 'on-demand'}"
                grid.append(_row(label, _variant(context, float(per_day), hours, spot)))
    targets = []
    for target in TARGETS:
        scenario = _variant(context, target.per_day, target.window_hours, target.spot)
        met = scenario.usd_per_1000 <= target.usd_per_1000
        entry: dict[str, Any] = {
            "target": target.label,
            "limit": target.usd_per_1000,
            "usd_per_1000": scenario.usd_per_1000,
            "met": met,
            "worst_minutes": scenario.worst_minutes,
            "fixed_per_1000": sum(usd for _, usd, _ in fixed_parts(SCHEDULED, context.settings, context.prices))
            / scenario.photos
            * 1000,
        }
        if not met:
            entry["levers"] = _levers(context, target)
            if target.spot:
                entry["spot_discount_needed"] = _discount_needed(context, target)
        targets.append(entry)
    photos, limit = float(args.backfill), BACKFILL_TARGET[1]
    backfill = context.backfill(system.SCHEDULED, photos, max_hosts=args.backfill_hosts)
    by_hosts = []
    for hosts in BACKFILL_HOSTS:
        scenario = context.backfill(system.SCHEDULED, photos, max_hosts=hosts)
        by_hosts.append({"hosts": hosts, "days": scenario.duration_hours / 24, "usd": scenario.usd_total})
    result: dict[str, Any] = {
        "title": "Scheduled mode: windows of a labelling job (SageMaker training job, managed Spot)",
        "config": context.describe(),
        "start_up": [
            {
                "phase": p.name,
                "seconds": p.seconds,
                "billed": p.billed,
                "controlled_by": p.controlled_by,
                "basis": p.basis,
                "lever": p.lever,
            }
            for p in context.job.start_up.phases
        ],
        "start_up_billed_seconds": context.job.start_up.billed_seconds,
        "start_up_total_seconds": context.job.start_up.total_seconds,
        "grid": grid,
        "targets": targets,
        "backfill": {
            "photos": photos,
            "usd": backfill.usd_total,
            "usd_per_1000": backfill.usd_per_1000,
            "days": backfill.duration_hours / 24,
            "notes": backfill.notes,
            "target_usd": limit if photos == BACKFILL_TARGET[0] else None,
            "by_hosts": by_hosts,
        },
    }
    if args.deadline_days:
        plan = hosts_for_deadline(photos, args.deadline_days, context.settings.scheduled, context.job)
        scenario = context.backfill(system.SCHEDULED, photos, max_hosts=plan.max_hosts)
        result["deadline"] = {
            "days": args.deadline_days,
            "hosts": plan.max_hosts,
            "duration_days": plan.duration_hours / 24,
            "usd": scenario.usd_total,
        }
    return result


def _minutes(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} min" if value < 90 else f"{value / 60:.1f} h"


def render(data: dict[str, Any]) -> str:
    lines = [wrap(data["title"]), wrap(data["config"]), "", "Start-up of each host, every window:"]
    lines += table(
        ["phase", "seconds", "billed", "controlled by"],
        [
            [p["phase"], f"{p['seconds']:.0f}", "yes" if p["billed"] else "no", p["controlled_by"]]
            for p in data["start_up"]
        ],
    )
    billed, total = data["start_up_billed_seconds"], data["start_up_total_seconds"]
    lines.append(f"billed {billed:.0f} s a host, {total:.0f} s until the first photo")
    for phase in data["start_up"]:
        lever = f" Lever: {phase['lever']}." if phase["lever"] else ""
        lines.append(wrap(f"- {phase['phase']}: {phase['basis']}.{lever}"))
    lines += ["", "Whole system, $ per 1,000 photos:"]
    lines += table(
        ["traffic, windows, market", "$/1k", "job $/1k", "$/month", "worst wait"],
        [
            [r["label"], f"{r['usd_per_1000']:.3f}", f"{r['job_per_1000']:.3f}", f"{r['usd_per_month']:,.2f}",
             _minutes(r["worst_minutes"])]
            for r in data["grid"]
        ],
    )  # fmt: skip
    lines += ["", "Issue 18's targets (whole system, $ per 1,000 photos):"]
    for t in data["targets"]:
        verdict = "met" if t["met"] else f"MISSED by ${t['usd_per_1000'] - t['limit']:.3f}"
        lines.append(
            wrap(
                f"- {t['target']}: ${t['usd_per_1000']:.3f} (target <= ${t['limit']:.2f}) {verdict}; worst wait "
                f"{_minutes(t['worst_minutes'])}; the fixed monthly costs alone ${t['fixed_per_1000']:.3f}"
            )
        )
        if not t["met"]:
            levers = ", ".join(f"{lever['lever']} ${lever['usd_per_1000']:.3f}" for lever in t["levers"])
            needed = t.get("spot_discount_needed", "n/a")
            discount = (
                ""
                if needed == "n/a"
                else f"; a Spot discount of {needed:.0%} would meet it"
                if needed is not None
                else "; no Spot discount below 99 % meets it"
            )
            lines.append(wrap(f"  what would reach it: {levers}{discount}", indent="    "))
    backfill = data["backfill"]
    target = backfill["target_usd"]
    lines += [
        "",
        wrap(
            f"Backfill of {backfill['photos']:,.0f} photos on the job: ${backfill['usd']:,.0f} "
            f"(${backfill['usd_per_1000']:.3f} per 1,000), {backfill['days']:.1f} days, "
            f"{'; '.join(backfill['notes'])}"
            + (f"; target <= ${target:,.0f} {'met' if backfill['usd'] <= target else 'MISSED'}" if target else "")
            + "."
        ),
    ]
    lines += table(
        ["max hosts", "days", "$ total"],
        [[str(r["hosts"]), f"{r['days']:.1f}", f"{r['usd']:,.0f}"] for r in backfill["by_hosts"]],
    )
    if "deadline" in data:
        d = data["deadline"]
        lines.append(
            wrap(
                f"Within {d['days']:g} days: scheduled.max_hosts {d['hosts']} ({d['duration_days']:.1f} days, "
                f"${d['usd']:,.0f}). Raise max_hosts for the backfill and lower it after; the training-job "
                "instance quota of your account must allow it."
            )
        )
    return "\n".join(lines)
