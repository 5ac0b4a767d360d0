"""Scheduled mode's labelling job and its windows: hosts, shards, billed host-hours, Spot, latency, backfill.

Mirrors the design in docs/scheduled-mode.md (issue 18): a window takes the oldest PENDING photos (at most
`ScheduledSettings.window_cap`), sizes the job with hosts = ceil(photos / (photos_per_hour_per_host x
target_job_minutes)) clamped to 1..max_hosts, gives each host whole manifest shards (about
`photos_per_shard` each), and runs one SageMaker training job on managed Spot. Windows start on the schedule, or
early when a probe every `backlog_check_minutes` finds `backlog_threshold` photos pending (or the oldest waiting
longer than an interval and a probe); they never overlap. Pure arithmetic; docs/cost-model.md, "Scheduled mode",
gives every source.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tools.cost.settings import ScheduledSettings
from tools.cost.startup import StartUp

# Spot interruptions per host-hour. AWS publishes no hourly rate, only the Spot Instance Advisor's monthly bands
# (<5 %, 5-10 %, 10-15 %, 15-20 %, >20 % of an instance type's Spot capacity reclaimed in the trailing month).
# 0.05 reads the worst band (20 %) as reached by instances that live ~4 hours: pessimistic for jobs of an hour or
# two. (Another project simulated 0.15 an hour, agentcore-public-stack PR #1025.) Managed Spot restarts the whole
# job when any of its instances is reclaimed (the job's status goes Interrupted -> Starting).
INTERRUPTIONS_PER_HOST_HOUR = 0.05
SIMULATED_DAYS = 3  # the last day is reported: it starts from the previous evening's backlog


class JobCapacityError(ValueError):
    """The windows cannot keep up with the uploads; the message names the keys to raise."""


@dataclass(frozen=True)
class JobAssumptions:
    seconds_per_photo: float  # one host's time a photo: the served path's, divided by the offline advantage
    start_up: StartUp
    on_demand_hour: float  # USD per host-hour at the training on-demand rate
    spot_discount: float  # managed Spot's saving, 0..1
    on_demand_share: float = 0.0  # share of windows that fall back to on-demand (Spot only)
    interruptions_per_host_hour: float = INTERRUPTIONS_PER_HOST_HOUR

    def __post_init__(self) -> None:
        if self.seconds_per_photo <= 0:
            raise ValueError(f"seconds per photo must be > 0, got {self.seconds_per_photo}")
        if not 0 <= self.spot_discount < 1:
            raise ValueError(f"the Spot discount must be in [0, 1), got {self.spot_discount}")
        if not 0 <= self.on_demand_share <= 1:
            raise ValueError(f"the on-demand share must be in [0, 1], got {self.on_demand_share}")
        if self.interruptions_per_host_hour < 0:
            raise ValueError("interruptions per host-hour must be >= 0")

    def hour_price(self, use_spot: bool) -> float:
        """Expected USD per billed host-hour: Spot, with `on_demand_share` of the windows on-demand."""
        if not use_spot:
            return self.on_demand_hour
        spot = self.on_demand_hour * (1 - self.spot_discount)
        return spot * (1 - self.on_demand_share) + self.on_demand_hour * self.on_demand_share


@dataclass(frozen=True)
class Job:
    photos: float
    hosts: int
    largest_host_photos: float  # the host with the most shards sets the job's length
    wall_seconds: float  # TrainingStartTime -> TrainingEndTime without interruption (billed on every host)
    interruptions: float  # expected
    host_hours: float  # billed, expected interruptions included
    usd: float

    @property
    def balance(self) -> float:
        """Share of the billed photo-time that labels photos (1.0: every host busy to the end)."""
        return self.photos / (self.hosts * self.largest_host_photos) if self.largest_host_photos else 1.0


def sizing_hosts(photos: float, settings: ScheduledSettings) -> int:
    """The design's rule: enough hosts to finish in target_job_minutes at the sizing throughput, 1..max_hosts."""
    per_host = settings.photos_per_hour_per_host * settings.target_job_minutes / 60
    return max(1, min(settings.max_hosts, math.ceil(photos / per_host - 1e-9)))


def largest_host_share(photos: float, hosts: int, photos_per_shard: int) -> float:
    """Photos on the busiest host. The plan step (lambda/window_core.py) writes max(hosts, ceil(photos /
    photos_per_shard)) shards of nearly equal size, and ShardedByS3Key gives each host whole shards."""
    if photos <= 0:
        return 0.0
    if hosts <= 1:
        return photos
    shards = max(hosts, math.ceil(photos / photos_per_shard - 1e-9))
    return math.ceil(shards / hosts - 1e-9) * photos / shards


def run_job(
    photos: float, settings: ScheduledSettings, assumptions: JobAssumptions, *, hosts: int | None = None
) -> Job:
    hosts = sizing_hosts(photos, settings) if hosts is None else hosts
    largest = largest_host_share(photos, hosts, settings.photos_per_shard)
    seconds = assumptions.seconds_per_photo
    wall = assumptions.start_up.billed_seconds + largest * seconds
    # A Spot interruption of any host restarts the job: every host pays its start-up again and redoes at most the
    # batch in flight (half of one, on average); finished photos are checkpointed.
    interruptions = assumptions.interruptions_per_host_hour * hosts * wall / 3600 if settings.use_spot else 0.0
    redo = assumptions.start_up.billed_seconds + settings.batch_size / 2 * seconds
    host_hours = hosts * (wall + interruptions * redo) / 3600
    return Job(
        photos=photos,
        hosts=hosts,
        largest_host_photos=largest,
        wall_seconds=wall,
        interruptions=interruptions,
        host_hours=host_hours,
        usd=host_hours * assumptions.hour_price(settings.use_spot),
    )


def job_latency_seconds(job: Job, assumptions: JobAssumptions) -> float:
    """From the window's start to the job's end: provisioning, the job, and its expected restarts."""
    restart = assumptions.start_up.total_seconds
    return (
        assumptions.start_up.total_seconds
        - assumptions.start_up.billed_seconds
        + job.wall_seconds
        + (job.interruptions * restart)
    )


# -- a day of windows -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start_minutes: float  # since midnight of the reported day
    job: Job
    worst_wait_minutes: float  # the manifest's oldest photo: upload -> the job's end
    early: bool  # started by the backlog probe, not the schedule


@dataclass(frozen=True)
class ScheduledDay:
    windows: list[Window]
    photos: float
    host_hours: float
    usd: float
    probes: int  # backlog-probe executions a day
    regular: int  # scheduled executions a day

    @property
    def worst_wait_minutes(self) -> float:
        return max((w.worst_wait_minutes for w in self.windows), default=0.0)


def _arrivals(rates: Sequence[float], start_minute: float, end_minute: float) -> float:
    """Photos uploaded between two minutes of the repeating day (`rates`: photos per second in each hour)."""
    total, minute = 0.0, start_minute
    while minute < end_minute - 1e-9:
        hour_end = (math.floor(minute / 60 + 1e-9) + 1) * 60
        upto = min(end_minute, hour_end)
        total += rates[int(minute // 60) % 24] * (upto - minute) * 60
        minute = upto
    return total


def most_per_day(settings: ScheduledSettings, assumptions: JobAssumptions) -> float:
    """Photos a day back-to-back full windows label: each takes window_cap, the next starts a probe later."""
    job = run_job(settings.window_cap, settings, assumptions)
    cycle_minutes = job_latency_seconds(job, assumptions) / 60 + settings.backlog_check_minutes
    return settings.window_cap * 24 * 60 / cycle_minutes


def scheduled_day(
    rates: Sequence[float], settings: ScheduledSettings, assumptions: JobAssumptions
) -> ScheduledDay:
    """Simulate the windows probe by probe over SIMULATED_DAYS identical days; report the last one."""
    step = settings.backlog_check_minutes
    interval = settings.interval_hours * 60
    day = 24 * 60
    queue: deque[list[float]] = deque()  # [upload minute of the chunk's first photo, photos]
    backlog, busy_until, windows = 0.0, -1.0, []
    minute = 0.0
    while minute < SIMULATED_DAYS * day - 1e-9:
        arrived = _arrivals(rates, minute, minute + step)
        if arrived > 0:
            queue.append([minute, arrived])
            backlog += arrived
        minute += step
        regular = math.floor(minute / interval + 1e-9) > math.floor((minute - step) / interval + 1e-9)
        if minute < busy_until - 1e-9 or backlog <= 1e-9:
            continue  # a window still runs (or nothing waits): this execution ends at once
        overdue = minute - queue[0][0] > interval + step
        if not (regular or backlog >= settings.backlog_threshold or overdue):
            continue
        take, oldest = min(backlog, settings.window_cap), queue[0][0]
        remaining = take
        while remaining > 1e-9:
            chunk = queue[0]
            used = min(chunk[1], remaining)
            chunk[1] -= used
            remaining -= used
            if chunk[1] <= 1e-9:
                queue.popleft()
        backlog -= take
        job = run_job(take, settings, assumptions)
        busy_until = minute + job_latency_seconds(job, assumptions) / 60
        if (SIMULATED_DAYS - 1) * day - 1e-9 <= minute < SIMULATED_DAYS * day - 1e-9:
            start = minute - (SIMULATED_DAYS - 1) * day
            windows.append(Window(start, job, busy_until - oldest, early=not regular))
    per_day = sum(rates) * 3600
    if per_day > most_per_day(settings, assumptions):
        raise JobCapacityError(
            f"scheduled mode cannot keep up with {per_day:,.0f} photos a day: back-to-back windows label at most "
            f"{most_per_day(settings, assumptions):,.0f} (a window takes {settings.window_cap:,.0f} photos: "
            f"scheduled.max_hosts {settings.max_hosts} x photos_per_hour_per_host x 80 % of max_job_minutes "
            f"{settings.max_job_minutes}); raise max_hosts"
        )
    return ScheduledDay(
        windows=windows,
        photos=sum(w.job.photos for w in windows),
        host_hours=sum(w.job.host_hours for w in windows),
        usd=sum(w.job.usd for w in windows),
        probes=round(day / step),
        regular=math.ceil(day / interval - 1e-9),
    )


# -- a backlog (the backfill) -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackfillPlan:
    photos: float
    max_hosts: int
    windows: int
    duration_hours: float
    host_hours: float
    usd: float


def backfill_plan(
    photos: float, settings: ScheduledSettings, assumptions: JobAssumptions, *, max_hosts: int | None = None
) -> BackfillPlan:
    """A backlog labelled window after window on up to `max_hosts` hosts: each window takes `window_cap`, the next
    starts at the first probe after the previous job (half a probe interval later, on average)."""
    if photos <= 0:
        raise ValueError(f"the backlog must hold at least one photo, got {photos}")
    sized = settings if max_hosts is None else replace(settings, max_hosts=max_hosts)
    if sized.max_hosts < 1:
        raise ValueError(f"max_hosts must be >= 1, got {sized.max_hosts}")
    cap = sized.window_cap
    full, rest = divmod(photos, cap)
    jobs = [(run_job(cap, sized, assumptions), int(full))]
    if rest:
        jobs.append((run_job(rest, sized, assumptions), 1))
    gap = sized.backlog_check_minutes / 2 * 60
    duration = sum(n * (job_latency_seconds(job, assumptions) + gap) for job, n in jobs) / 3600
    return BackfillPlan(
        photos=photos,
        max_hosts=sized.max_hosts,
        windows=sum(n for _, n in jobs),
        duration_hours=duration,
        host_hours=sum(n * job.host_hours for job, n in jobs),
        usd=sum(n * job.usd for job, n in jobs),
    )


def hosts_for_deadline(
    photos: float, days: float, settings: ScheduledSettings, assumptions: JobAssumptions, *, most: int = 1000
) -> BackfillPlan:
    """The smallest max_hosts that labels `photos` within `days` (the duration falls as hosts rise)."""
    if days <= 0:
        raise ValueError(f"the deadline must be > 0 days, got {days}")
    low, high = 1, most
    if backfill_plan(photos, settings, assumptions, max_hosts=high).duration_hours > days * 24:
        raise JobCapacityError(f"even {most} hosts need more than {days:g} days for {photos:,.0f} photos")
    while low < high:
        middle = (low + high) // 2
        if backfill_plan(photos, settings, assumptions, max_hosts=middle).duration_hours <= days * 24:
            high = middle
        else:
            low = middle + 1
    return backfill_plan(photos, settings, assumptions, max_hosts=low)
