"""The whole system in scheduled mode: uploads recorded PENDING, labelled by windows of a job on managed Spot.

The job's host-hours come from tools/cost/job.py; every other part is counted per photo, per window or per month
here, as system.py does for the endpoint modes. docs/cost-model.md, "Scheduled mode", gives each count's source.
"""

from __future__ import annotations

from collections.abc import Sequence

from tools.cost.fixed import SCHEDULED, fixed_parts
from tools.cost.fleet import Assumptions, Performance, hourly_rates
from tools.cost.job import INTERRUPTIONS_PER_HOST_HOUR, JobAssumptions, backfill_plan, scheduled_day
from tools.cost.prices import Prices
from tools.cost.settings import Settings
from tools.cost.startup import StartUp
from tools.cost.system import (
    BACKFILL_TRANSITIONS_PER_BATCH,
    DAYS_PER_MONTH,
    DEFAULT_ASSUMPTIONS,
    Scenario,
    _merge,
    _per_photo_parts,
    lambda_work_seconds,
)

# -- per photo (docs/scheduled-mode.md) --------------------------------------------------------------------------
# S3: the upload Lambda's GetObject and the job's exact-version GetObject; PUTs: one checkpoint file per batch and
# one manifest shard per photos_per_shard (both fractions of a request a photo).
S3_GETS = 2
# DynamoDB: the upload Lambda's GetItem and PutItem of PENDING (table + by-status; no label, so not in by-hotel);
# the job's GetItem (Labeller.prepare) and the result's PutItem (table, by-status key change = 2, by-hotel = 1);
# the window pages PENDING items from the by-status index (eventually consistent, 0.5 unit per 4 KB read).
DYNAMODB_READS = 2
DYNAMODB_WRITES = 2 + 4
ITEM_BYTES = 400  # a PENDING item: URI, status, dates, ETag, version, hotel (assumed)
JOB_LOG_BYTES_PER_PHOTO = 200  # the job's per-batch progress lines and summary, per photo (assumed)
# A window's execution: survey, choice, overlap check, plan, label (.sync), describe, report and the end states
# (docs/scheduled-mode.md, 7 steps); a probe that starts nothing: start, survey, choice, end.
WINDOW_TRANSITIONS = 12
PROBE_TRANSITIONS = 4
WINDOW_FUNCTION_MB = 256  # survey, plan and report Lambdas (assumed)
SURVEY_SECONDS = 0.5  # one Query page of the oldest PENDING items (assumed)
PLAN_SECONDS_PER_PHOTO = 0.0002  # paging PENDING items and writing shards: ~5,000 items a second (assumed)
BACKFILL_RECORD_SECONDS = 0.03  # scheduled backfill: HeadObject + the PENDING PutItem per listed photo (assumed)


def job_assumptions(
    perf: Performance,
    settings: Settings,
    prices: Prices,
    *,
    start_up: StartUp,
    offline_speedup: float = 1.0,
    spot_discount: float | None = None,
    on_demand_share: float = 0.0,
    on_demand_hour: float | None = None,
    interruptions_per_host_hour: float | None = None,
) -> JobAssumptions:
    """The job's inputs: the served path's time a photo over the offline engine's measured advantage, the
    training rate of scheduled.instance_type, the managed-Spot discount of prices.json unless given."""
    if offline_speedup <= 0:
        raise ValueError(f"the offline engine's speed-up must be > 0, got {offline_speedup}")
    return JobAssumptions(
        seconds_per_photo=perf.seconds_per_photo / offline_speedup,
        start_up=start_up,
        on_demand_hour=on_demand_hour or prices.training_instance_hour(settings.scheduled.instance_type),
        spot_discount=prices.spot_discount if spot_discount is None else spot_discount,
        on_demand_share=on_demand_share,
        interruptions_per_host_hour=(
            INTERRUPTIONS_PER_HOST_HOUR if interruptions_per_host_hour is None else interruptions_per_host_hour
        ),
    )


def _job_parts(
    *, photos: float, windows: float, probes: float, regular: float, settings: Settings, prices: Prices
) -> list[tuple[str, float, str]]:
    """Per-window and per-photo charges of the windows themselves (state machine, schedules, their Lambdas)."""
    scheduled = settings.scheduled
    invocations = probes + regular + 2 * windows  # survey on every execution; plan + report per window
    seconds = (probes + regular) * SURVEY_SECONDS + photos * PLAN_SECONDS_PER_PHOTO
    transitions = windows * WINDOW_TRANSITIONS + (probes + regular - windows) * PROBE_TRANSITIONS
    return [
        ("Lambda duration", seconds * WINDOW_FUNCTION_MB / 1024 * prices.lambda_gb_second_x86, "window functions"),
        ("Lambda requests", invocations * prices.lambda_per_request, "survey, plan, report"),
        (
            "Step Functions",
            transitions * prices.sfn_transition + (probes + regular) * prices.scheduler_invocation,
            f"{WINDOW_TRANSITIONS} transitions a window, {PROBE_TRANSITIONS} a probe; Scheduler invocations",
        ),
        (
            "S3 requests",
            photos * (1 / scheduled.batch_size + 1 / scheduled.photos_per_shard) * prices.s3_put,
            "checkpoint files and manifest shards",
        ),
    ]


def scheduled_scenario(
    *,
    photos_per_day: float,
    curve: Sequence[float] | None,
    settings: Settings,
    prices: Prices,
    job: JobAssumptions,
    assumptions: Assumptions = DEFAULT_ASSUMPTIONS,
) -> Scenario:
    """A month of uploads at `photos_per_day` (spread by `curve`) labelled by the scheduled windows."""
    if photos_per_day <= 0:
        raise ValueError(f"photos per day must be > 0, got {photos_per_day}")
    scheduled = settings.scheduled
    day = scheduled_day(hourly_rates(photos_per_day, curve), scheduled, job)
    month = DAYS_PER_MONTH
    photos = photos_per_day * month
    batches = photos / settings.upload_batch_size
    seconds = lambda_work_seconds(settings.upload_memory_mb)  # validate, normalise, record PENDING: no waiting
    market = "Spot" if scheduled.use_spot else "on-demand"
    if scheduled.use_spot and job.on_demand_share:
        market += f", {job.on_demand_share:.0%} of windows on-demand"
    labelling = (
        "Labelling job",
        day.usd * month,
        f"{day.host_hours:.2f} host-h/day in {len(day.windows)} windows ({market})",
    )
    reads = DYNAMODB_READS + ITEM_BYTES / 4096 * 0.5
    variable = _per_photo_parts(
        mode=SCHEDULED,
        photos=photos,
        invocations=batches,
        lambda_gb_seconds=photos * seconds * settings.upload_memory_mb / 1024,
        queue_requests=photos + 2 * batches,
        prices=prices,
        assumptions=assumptions,
        memory_mb=settings.upload_memory_mb,
        s3=(S3_GETS, 0),
        dynamodb=(reads, DYNAMODB_WRITES),
    )
    job_logs = photos * JOB_LOG_BYTES_PER_PHOTO / 1e9 * prices.logs_per_gb
    variable.append(("CloudWatch + X-Ray", job_logs, "job logs"))
    windows = len(day.windows) * month
    variable += _job_parts(
        photos=photos,
        windows=windows,
        probes=day.probes * month,
        regular=day.regular * month,
        settings=settings,
        prices=prices,
    )
    spot_wait = scheduled.spot_wait_minutes if scheduled.use_spot else 0
    return Scenario(
        mode=SCHEDULED,
        path="upload",
        photos=photos,
        parts=_merge([labelling, *variable], fixed_parts(SCHEDULED, settings, prices), photos),
        instance_hours=day.host_hours,
        lambda_seconds_per_photo=seconds,
        waiting_seconds_per_photo=0.0,
        worst_minutes=day.worst_wait_minutes + spot_wait,
        notes=[
            f"{len(day.windows)} windows a day ({sum(w.early for w in day.windows)} early), "
            f"{max(w.job.hosts for w in day.windows)} host(s) at most, job balance "
            f"{min(w.job.balance for w in day.windows):.0%} at worst"
        ],
    )


def scheduled_backfill_scenario(
    *,
    photos: float,
    settings: Settings,
    prices: Prices,
    job: JobAssumptions,
    max_hosts: int | None = None,
    assumptions: Assumptions = DEFAULT_ASSUMPTIONS,
) -> Scenario:
    """A backlog listed by the backfill into PENDING (one HeadObject each) and labelled by back-to-back windows."""
    plan = backfill_plan(photos, settings.scheduled, job, max_hosts=max_hosts)
    batches = photos / settings.backfill_items_per_batch
    labelling = ("Labelling job", plan.usd, f"{plan.host_hours:,.0f} host-h in {plan.windows} windows")
    variable = _per_photo_parts(
        mode=SCHEDULED,
        photos=photos,
        invocations=batches,
        lambda_gb_seconds=photos * BACKFILL_RECORD_SECONDS * settings.backfill_memory_mb / 1024,
        queue_requests=0.0,
        prices=prices,
        assumptions=assumptions,
        memory_mb=settings.backfill_memory_mb,
        s3=(S3_GETS, 0),  # the HeadObject is billed as a GET
        dynamodb=(1 + ITEM_BYTES / 4096 * 0.5, DYNAMODB_WRITES),
    )
    variable.append(
        (
            "Step Functions",
            batches * BACKFILL_TRANSITIONS_PER_BATCH * prices.sfn_transition,
            f"{BACKFILL_TRANSITIONS_PER_BATCH} transitions a batch",
        )
    )
    variable += _job_parts(
        photos=photos, windows=plan.windows, probes=0, regular=plan.windows, settings=settings, prices=prices
    )
    return Scenario(
        mode=SCHEDULED,
        path="backfill",
        photos=photos,
        parts=_merge([labelling, *variable], [], photos),
        instance_hours=plan.host_hours,
        lambda_seconds_per_photo=BACKFILL_RECORD_SECONDS,
        waiting_seconds_per_photo=0.0,
        duration_hours=plan.duration_hours,
        notes=[f"up to {plan.max_hosts} host(s) a window, {plan.windows} windows"],
    )


def windows_per_day(photos_per_day: float, settings: Settings, job: JobAssumptions) -> int:
    """How many windows a flat day of `photos_per_day` starts (for the reports)."""
    return len(scheduled_day(hourly_rates(photos_per_day), settings.scheduled, job).windows)
