"""What every whole-system report needs, built once from the command line: settings, performance, prices, the
daily curve, and the three modes' scenarios (real-time, async, scheduled)."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from classification.contract import Taxonomy
from classification.image_tokens import DEFAULT_PROFILE, GRID_PINPOINTS
from tools.cost import fleet, job, scheduled, system
from tools.cost import prices as price_list
from tools.cost import settings as settings_module
from tools.cost.backlog import (
    A10G_TOKENS_PER_SECOND,
    INSTANCE_TYPES,
    PROFILE_TIME_RATIO,
    SEED_SECONDS_PER_1000,
    SINGLE_STREAM_FACTOR,
)
from tools.cost.fleet import Performance
from tools.cost.inputs import (
    DEFAULT_SIZE,
    EstimateError,
    PhotoSize,
    SizeMix,
    argument,
    non_negative_float,
    parse_size,
    positive_float,
)
from tools.cost.settings import Settings
from tools.cost.startup import default_start_up
from tools.cost.tokens import llava_tokens

DOC = "docs/cost-model.md"
TIME, TOKENS = "time", "tokens"


def fraction(text: str) -> float:
    value = non_negative_float(text)
    if value > 1:
        raise EstimateError(f"{text!r} must be between 0 and 1")
    return value


def below_one(text: str) -> float:
    value = fraction(text)
    if value >= 1:
        raise EstimateError(f"{text!r} must be below 1")
    return value


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options every whole-system report takes (config, throughput, prices, the job's assumptions)."""
    parser.add_argument("--config", type=Path, default=settings_module.CDK_JSON, help="cdk.json to read")
    parser.add_argument(
        "--profile",
        choices=list(GRID_PINPOINTS),
        default=DEFAULT_PROFILE,
        help=f"image-token profile the deployed model uses (default {DEFAULT_PROFILE}, the training default)",
    )
    parser.add_argument(
        "--calibration",
        choices=(TIME, TOKENS),
        default=TIME,
        help="time: the seed's 674 s per 1,000 photos x the profile's measured time ratio (default); tokens: "
        "time proportional to each --size's tokens (an upper bound on what a smaller photo saves)",
    )
    parser.add_argument(
        "--size",
        action="append",
        type=argument(parse_size),
        metavar="WxH[:WEIGHT]",
        help=f"a photo size and its share, repeatable (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}; "
        "changes the time a photo takes only with --calibration tokens)",
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
        help=f"a new endpoint instance's billed start-up (default {fleet.COLD_START_MINUTES:g}, assumed)",
    )
    parser.add_argument(
        "--async-idle-minutes",
        type=argument(non_negative_float),
        default=fleet.ASYNC_IDLE_MINUTES,
        help=f"idle time before an async endpoint reaches 0 instances (default {fleet.ASYNC_IDLE_MINUTES:g})",
    )
    parser.add_argument("--arm64", action="store_true", help="price the Lambdas on arm64 (20 %% cheaper GB-s)")
    job_options = parser.add_argument_group("scheduled mode's labelling job")
    job_options.add_argument(
        "--spot-discount",
        type=argument(below_one),
        help="managed Spot's saving, 0..1 (default prices.json's; measure 1 - BillableTimeInSeconds / "
        "TrainingTimeInSeconds on your jobs)",
    )
    job_options.add_argument(
        "--on-demand-share", type=argument(fraction), default=0.0, help="share of windows that fall back to "
        "on-demand after scheduled.spot_wait_minutes (default 0)",
    )  # fmt: skip
    job_options.add_argument(
        "--offline-speedup",
        type=argument(positive_float),
        default=1.0,
        help="the offline engine's photos/s over the served path's on the GPU (default 1: none measured there)",
    )
    job_options.add_argument(
        "--job-startup-seconds",
        type=argument(non_negative_float),
        help="measured billed start-up of a job host (TrainingStartTime -> first photo + finish)",
    )
    job_options.add_argument(
        "--enforce-eager", action="store_true", help="price the job's engine without torch.compile/CUDA graphs"
    )
    job_options.add_argument("--job-price-per-hour", type=argument(positive_float), help="on-demand $/host-hour")
    job_options.add_argument(
        "--interruptions-per-host-hour",
        type=argument(non_negative_float),
        help="Spot interruptions a host-hour, each restarting the job "
        f"(default {job.INTERRUPTIONS_PER_HOST_HOUR:g})",
    )
    job_options.add_argument(
        "--window-hours",
        type=argument(positive_float),
        help="hours between regular windows (default: scheduled.schedule, rate(6 hours))",
    )
    job_options.add_argument(
        "--on-demand", action="store_true", help="price the job on-demand (scheduled.use_spot false)"
    )


def add_curve_options(parser: argparse.ArgumentParser) -> None:
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


def performance(
    *,
    profile: str,
    tokens_per_photo: float,
    instance_type: str,
    tokens_per_second: float | None = None,
    calibration: str = TIME,
) -> Performance:
    """One instance's time a photo when saturated and alone (x1.71, the blog repo's single-threaded run).

    Time calibration: the seed's measured 674 s per 1,000 photos on one saturated ml.g5.xlarge (stock profile),
    times the profile's measured time ratio. Token calibration: the tokens a photo costs at the seed's tokens/s.
    A measured --tokens-per-second overrides both."""
    speed = INSTANCE_TYPES[instance_type].relative_speed if instance_type in INSTANCE_TYPES else 1.0
    if tokens_per_second is not None:
        seconds = tokens_per_photo / tokens_per_second
    elif calibration == TOKENS:
        seconds = tokens_per_photo / (A10G_TOKENS_PER_SECOND * speed)
    else:
        seconds = SEED_SECONDS_PER_1000 / 1000 * PROFILE_TIME_RATIO[profile] / speed
    return Performance(seconds_per_photo=seconds, unloaded_latency=seconds * SINGLE_STREAM_FACTOR)


@dataclass(frozen=True)
class Context:
    settings: Settings
    perf: Performance
    prices: price_list.Prices
    real_time_price: float
    async_price: float
    assumptions: fleet.Assumptions
    job: job.JobAssumptions
    curve: list[float] | None
    profile: str
    tokens: float
    calibration: str

    @classmethod
    def build(cls, args: argparse.Namespace) -> Context:
        from classification.images import MAX_SIDE

        settings = _scheduled_overrides(settings_module.load(args.config), args)
        prices = price_list.load()
        sizes = (
            SizeMix(tuple(args.size), "--size") if args.size else SizeMix((PhotoSize(*DEFAULT_SIZE),), "default")
        )
        tokens = llava_tokens(sizes, args.profile, Taxonomy.load(), max_side=MAX_SIDE).total
        perf = performance(
            profile=args.profile,
            tokens_per_photo=tokens,
            instance_type=settings.instance_type,
            tokens_per_second=args.tokens_per_second,
            calibration=args.calibration,
        )
        start_up = default_start_up(enforce_eager=args.enforce_eager)
        if args.job_startup_seconds is not None:
            start_up = start_up.with_billed_seconds(args.job_startup_seconds)
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
            job=scheduled.job_assumptions(
                perf,
                settings,
                prices,
                start_up=start_up,
                offline_speedup=args.offline_speedup,
                spot_discount=args.spot_discount,
                on_demand_share=args.on_demand_share,
                on_demand_hour=args.job_price_per_hour,
                interruptions_per_host_hour=args.interruptions_per_host_hour,
            ),
            curve=_curve(args),
            profile=args.profile,
            tokens=tokens,
            calibration=args.calibration,
        )

    def upload(self, mode: str, per_day: float, settings: Settings | None = None) -> system.Scenario:
        if mode == system.SCHEDULED:
            return scheduled.scheduled_scenario(
                photos_per_day=per_day,
                curve=self.curve,
                settings=settings or self.settings,
                prices=self.prices,
                job=self.job,
                assumptions=self.assumptions,
            )
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

    def backfill(self, mode: str, photos: float, max_hosts: int | None = None) -> system.Scenario:
        if mode == system.SCHEDULED:
            return scheduled.scheduled_backfill_scenario(
                photos=photos,
                settings=self.settings,
                prices=self.prices,
                job=self.job,
                max_hosts=max_hosts,
                assumptions=self.assumptions,
            )
        return system.backfill_scenario(
            mode=mode,
            photos=photos,
            perf=self.perf,
            settings=self.settings,
            prices=self.prices,
            instance_price=self.real_time_price if mode == system.REAL_TIME else self.async_price,
            assumptions=self.assumptions,
        )

    def with_job(self, **changes: object) -> Context:
        """The same context with the job's assumptions or the scheduled settings changed (`use_spot`,
        `schedule`, ... go to the settings; the rest to JobAssumptions)."""
        names = set(self.settings.scheduled.__dataclass_fields__)
        section = {k: v for k, v in changes.items() if k in names}
        rest = {k: v for k, v in changes.items() if k not in names}
        settings = replace(self.settings, scheduled=replace(self.settings.scheduled, **section))  # type: ignore[arg-type]
        return replace(self, settings=settings, job=replace(self.job, **rest))  # type: ignore[arg-type]

    def describe(self) -> str:
        s, sched, job_ = self.settings, self.settings.scheduled, self.job
        market = "Spot" if sched.use_spot else "on-demand"
        return (
            f"Config: {s.instance_type}, {s.min_capacity}..{s.max_capacity} instances, target "
            f"{s.target_in_flight:g} in flight, scale-in cooldown {s.scale_in_cooldown_seconds} s; uploads: batch "
            f"{s.upload_batch_size}, {s.upload_max_concurrency} in flight, {s.upload_memory_mb} MB; backfill: "
            f"{s.backfill_items_per_batch} a batch, {s.backfill_max_concurrency} in flight, "
            f"{s.backfill_memory_mb} MB. Scheduled: a window every {sched.interval_hours:g} h (early at "
            f"{sched.backlog_threshold:,} pending), {sched.instance_type} x1..{sched.max_hosts} on {market} "
            f"(${job_.on_demand_hour:g}/h, Spot discount {job_.spot_discount:.0%}, "
            f"{job_.on_demand_share:.0%} of windows on-demand), billed start-up "
            f"{job_.start_up.billed_seconds:.0f} s a host. {self.profile} profile ({self.calibration} "
            f"calibration): {self.perf.seconds_per_photo:.3f} s a photo saturated, "
            f"{self.perf.unloaded_latency:.2f} s unloaded; the job {job_.seconds_per_photo:.3f} s. "
            f"${self.real_time_price:g}/h real-time, ${self.async_price:g}/h async, prices read "
            f"{self.prices.read_on}; Lambda {self.assumptions.architecture}."
        )


def _scheduled_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    changes: dict[str, object] = {}
    if getattr(args, "window_hours", None):
        changes["window_interval_hours"] = args.window_hours
    if getattr(args, "on_demand", False):
        changes["use_spot"] = False
    if not changes:
        return settings
    return replace(settings, scheduled=replace(settings.scheduled, **changes))  # type: ignore[arg-type]


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


def curve_name(context: Context) -> str:
    return "flat" if context.curve is None else "hourly curve " + " ".join(f"{w:g}" for w in context.curve)


def notes(context: Context) -> list[str]:
    a = context.assumptions
    return [
        f"Assumed: a new endpoint instance is billed {a.cold_start_minutes:g} min while it loads; an idle async "
        f"endpoint reaches 0 instances after {a.async_idle_minutes:g} min; real-time target tracking holds "
        f"utilisation at T/(T+1) = {fleet.utilisation_at_target(context.settings.target_in_flight):.0%}, async "
        "tracking of the backlog per instance a saturated fleet. Free tiers not subtracted. Details and sources: "
        f"{DOC}; prices: tools/cost/prices.json.",
    ]
