"""What the whole system costs under real traffic: real-time or asynchronous endpoint, upload path or backfill.

Pure arithmetic over `Settings` (the deployed configuration), `Performance` (how fast one instance labels) and
`Prices`: the endpoint's instance-hours come from fleet.py, every other part is counted per photo, per batch or
per month here. docs/cost-model.md explains each assumption and gives its source.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tools.cost.fixed import HOURS_PER_MONTH, fixed_parts, init_gb_seconds
from tools.cost.fleet import (
    ALL_MODES,
    ASYNC,
    MODES,
    REAL_TIME,
    SCHEDULED,
    Assumptions,
    CapacityError,
    Performance,
    async_day,
    hourly_rates,
    real_time_day,
)
from tools.cost.prices import Prices
from tools.cost.settings import Settings

__all__ = ["ALL_MODES", "ASYNC", "MODES", "REAL_TIME", "SCHEDULED", "Assumptions", "CapacityError", "Performance"]

DAYS_PER_MONTH = HOURS_PER_MONTH / 24
DEFAULT_ASSUMPTIONS = Assumptions()

# -- the labeller Lambda -----------------------------------------------------------------------------------------
LAMBDA_FULL_VCPU_MB = 1769  # Lambda allots CPU in proportion to memory: one vCPU at 1,769 MB
NORMALISE_CPU_SECONDS = 0.075  # 12-MP JPEG on one full core (benchmarks/bench_normalize.py, docs/upload-path.md)
IO_SECONDS_PER_PHOTO = 0.10  # GetObject of a ~3 MB photo + GetItem + conditional PutItem (assumed)
ASYNC_SUBMIT_IO_SECONDS = 0.05  # PutObject of the ~70 kB request + InvokeEndpointAsync (assumed)
WRITER_SECONDS_PER_PHOTO = 0.05  # label writer: GetObject of the < 1 kB answer + PutItem (assumed)

# -- requests per photo ------------------------------------------------------------------------------------------
# S3 (GET, PUT) a photo. Real-time: the labeller's GetObject. Async (lambda/async_aws.py, tools/async_worker.py):
# the submitter's GetObject of the photo and PutObject of the ticket and the request; SageMaker's GetObject of the
# request and PutObject of the answer; the writer's GetObject of the ticket and of the answer.
S3_REQUESTS = {REAL_TIME: (1, 0), ASYNC: (4, 3)}
# DynamoDB (read units, write units) a new photo; items < 1 KB, two GSIs projecting ALL attributes. A write costs
# one unit in the table and one in each index the item is in; changing an index's key attribute costs two there
# (delete + put) (DynamoDB Developer Guide, "Provisioned throughput considerations for global secondary indexes").
# Real-time: a strongly consistent GetItem, then PutItem into the table and both indexes. Async: GetItem; the
# claim (table + by-status; no label yet, so not in by-hotel); mark_invoked (table + by-status, a projected
# attribute changes); the writer's PutItem (table, by-status PENDING -> LABELED = 2, by-hotel new = 1).
DYNAMODB_UNITS = {REAL_TIME: (1, 3), ASYNC: (1, 2 + 2 + 4)}
LOG_BYTES_PER_PHOTO = 1_000  # the per-record JSON log line(s) with image_uri (assumed)
LOG_BYTES_PER_INVOCATION = 1_500  # START/END/REPORT lines + the EMF metrics document (assumed)
BACKFILL_TRANSITIONS_PER_BATCH = 3  # child execution: start, Invoke (Lambda), end (STANDARD workflow)


@dataclass(frozen=True)
class Part:
    name: str
    usd_per_month: float
    usd_per_1000: float
    basis: str  # how the figure was made, in a few words


@dataclass(frozen=True)
class Scenario:
    mode: str
    path: str  # "upload" (per month) or "backfill" (the whole backlog once)
    photos: float  # per month (upload) or in the backlog (backfill)
    parts: list[Part]
    instance_hours: float  # per day (upload) or in total (backfill)
    lambda_seconds_per_photo: float  # billed duration, waiting included
    waiting_seconds_per_photo: float
    duration_hours: float | None = None  # backfill only
    notes: list[str] = field(default_factory=list)
    worst_minutes: float | None = None  # the longest a new photo waits for its label (upload path only)

    @property
    def usd_total(self) -> float:
        return sum(p.usd_per_month for p in self.parts)

    @property
    def usd_per_1000(self) -> float:
        return self.usd_total / self.photos * 1000

    @property
    def dominant(self) -> Part:
        return max(self.parts, key=lambda p: p.usd_per_month)


# -- parts -------------------------------------------------------------------------------------------------------


def lambda_work_seconds(memory_mb: int) -> float:
    """Billed seconds of the labeller's own work per photo: I/O plus the normaliser on its share of a vCPU."""
    share = min(1.0, memory_mb / LAMBDA_FULL_VCPU_MB)
    return IO_SECONDS_PER_PHOTO + NORMALISE_CPU_SECONDS / share


def _gb_second(prices: Prices, assumptions: Assumptions) -> float:
    return prices.lambda_gb_second_arm64 if assumptions.architecture == "arm64" else prices.lambda_gb_second_x86


def _per_photo_parts(
    *,
    mode: str,
    photos: float,
    invocations: float,
    lambda_gb_seconds: float,
    queue_requests: float,
    prices: Prices,
    assumptions: Assumptions,
    memory_mb: int,
    s3: tuple[float, float] | None = None,
    dynamodb: tuple[float, float] | None = None,
) -> list[tuple[str, float, str]]:
    """(name, USD, basis) for every per-photo charge except the endpoint, over `photos` photos."""
    gets, puts = s3 or S3_REQUESTS[mode]
    reads, writes = dynamodb or DYNAMODB_UNITS[mode]
    log_gb = (photos * LOG_BYTES_PER_PHOTO + invocations * LOG_BYTES_PER_INVOCATION) / 1e9
    init = init_gb_seconds(invocations, memory_mb)
    parts = [
        (
            "Lambda duration",
            (lambda_gb_seconds + init) * _gb_second(prices, assumptions),
            f"{assumptions.architecture} GB-s, INIT of 1 % of invocations included",
        ),
        ("Lambda requests", invocations * prices.lambda_per_request, "one per batch"),
        (
            "S3 requests",
            photos * (gets * prices.s3_get + puts * prices.s3_put),
            f"{gets:g} GET + {puts:g} PUT a photo",
        ),
        ("SQS requests", queue_requests * prices.sqs_per_request, "send, receive, delete"),
        (
            "DynamoDB",
            photos * (reads * prices.dynamodb_read_unit + writes * prices.dynamodb_write_unit),
            f"{reads:g} RRU + {writes:g} WRU a photo",
        ),
        (
            "CloudWatch + X-Ray",
            log_gb * prices.logs_per_gb + invocations * prices.xray_per_trace,
            "log ingestion + traces",
        ),
    ]
    if mode == ASYNC:
        parts.append(("SNS", photos * prices.sns_publish, "one completion notification a photo"))
    return parts


def _merge(
    variable: list[tuple[str, float, str]], fixed: list[tuple[str, float, str]], photos: float
) -> list[Part]:
    totals: dict[str, list[float | str]] = {}
    for name, usd, basis in [*variable, *fixed]:
        if name in totals:
            totals[name][0] = float(totals[name][0]) + usd
            totals[name][1] = f"{totals[name][1]}; {basis}"
        else:
            totals[name] = [usd, basis]
    return [
        Part(name, float(usd), float(usd) / photos * 1000, str(basis)) for name, (usd, basis) in totals.items()
    ]


def upload_scenario(
    *,
    mode: str,
    photos_per_day: float,
    curve: Sequence[float] | None,
    perf: Performance,
    settings: Settings,
    prices: Prices,
    instance_price: float,
    assumptions: Assumptions = DEFAULT_ASSUMPTIONS,
) -> Scenario:
    """A month of per-upload labelling at `photos_per_day`, spread over the day by `curve`."""
    if photos_per_day <= 0:
        raise ValueError(f"photos per day must be > 0, got {photos_per_day}")
    rates = hourly_rates(photos_per_day, curve)
    day = (real_time_day if mode == REAL_TIME else async_day)(rates, perf, settings, assumptions)
    month = DAYS_PER_MONTH
    photos = photos_per_day * month
    instance_hours_day = sum(h.instances for h in day)
    waiting = sum(h.processed * h.waiting_seconds for h in day) / photos_per_day
    memory_gb = settings.upload_memory_mb / 1024
    work = lambda_work_seconds(settings.upload_memory_mb)
    batches = photos / settings.upload_batch_size
    if mode == REAL_TIME:
        seconds = work + waiting
        invocations = batches
        queue_requests = (
            photos + 2 * batches
        )  # S3's SendMessage; one ReceiveMessage + one DeleteMessageBatch a batch
    else:
        # Submitter: normalise + PutObject + InvokeEndpointAsync, no waiting. Writer (SNS -> SQS -> Lambda): read
        # the answer, write the label.
        seconds = work + ASYNC_SUBMIT_IO_SECONDS + WRITER_SECONDS_PER_PHOTO
        invocations = 2 * batches
        queue_requests = 2 * (photos + 2 * batches)
    endpoint = (
        "Endpoint",
        instance_hours_day * month * instance_price,
        f"{instance_hours_day:.1f} instance-h/day",
    )
    variable = _per_photo_parts(
        mode=mode,
        photos=photos,
        invocations=invocations,
        lambda_gb_seconds=photos * seconds * memory_gb,
        queue_requests=queue_requests,
        prices=prices,
        assumptions=assumptions,
        memory_mb=settings.upload_memory_mb,
    )
    parts = _merge([endpoint, *variable], fixed_parts(mode, settings, prices), photos)
    return Scenario(
        mode=mode,
        path="upload",
        photos=photos,
        parts=parts,
        instance_hours=instance_hours_day,
        lambda_seconds_per_photo=seconds,
        waiting_seconds_per_photo=waiting if mode == REAL_TIME else 0.0,
        worst_minutes=max(h.worst_seconds for h in day) / 60,
    )


def backfill_scenario(
    *,
    mode: str,
    photos: float,
    perf: Performance,
    settings: Settings,
    prices: Prices,
    instance_price: float,
    assumptions: Assumptions = DEFAULT_ASSUMPTIONS,
) -> Scenario:
    """Labelling a backlog of `photos` once through the backfill (its Lambda, its concurrency)."""
    if photos <= 0:
        raise ValueError(f"the backlog must hold at least one photo, got {photos}")
    in_flight = settings.backfill_max_concurrency
    if mode == REAL_TIME:
        # Target tracking spreads the backfill's in-flight requests at `target_in_flight` per instance; a closed
        # system of N requests runs at min(N / unloaded latency, instances / time per photo).
        wanted = math.ceil(in_flight / settings.target_in_flight - 1e-9)
        instances = min(max(wanted, settings.min_capacity), settings.max_capacity)
        throughput = min(in_flight / perf.unloaded_latency, instances * perf.photos_per_second)
        waiting = in_flight / throughput  # Little's law over the backfill's invocations
        seconds = lambda_work_seconds(settings.backfill_memory_mb) + waiting
    else:
        # The backfill submits without waiting; the backlog scales the endpoint out to max_capacity.
        instances = settings.max_capacity
        throughput = instances * perf.photos_per_second
        waiting = 0.0
        seconds = lambda_work_seconds(settings.backfill_memory_mb) + ASYNC_SUBMIT_IO_SECONDS
        seconds += WRITER_SECONDS_PER_PHOTO
    duration_hours = photos / throughput / 3600
    start_and_stop = instances * (assumptions.cold_start_minutes + assumptions.async_idle_minutes) / 60
    instance_hours = instances * duration_hours + (start_and_stop if mode == ASYNC else 0.0)
    batches = photos / settings.backfill_items_per_batch
    invocations = batches if mode == REAL_TIME else batches + photos / settings.upload_batch_size
    queue_requests = 0.0 if mode == REAL_TIME else photos + 2 * photos / settings.upload_batch_size
    endpoint = ("Endpoint", instance_hours * instance_price, f"{instance_hours:,.0f} instance-h")
    variable = _per_photo_parts(
        mode=mode,
        photos=photos,
        invocations=invocations,
        lambda_gb_seconds=photos * seconds * settings.backfill_memory_mb / 1024,
        queue_requests=queue_requests,
        prices=prices,
        assumptions=assumptions,
        memory_mb=settings.backfill_memory_mb,
    )
    variable.append(
        (
            "Step Functions",
            batches * BACKFILL_TRANSITIONS_PER_BATCH * prices.sfn_transition,
            f"{BACKFILL_TRANSITIONS_PER_BATCH} transitions a batch",
        )
    )
    return Scenario(
        mode=mode,
        path="backfill",
        photos=photos,
        parts=_merge([endpoint, *variable], [], photos),
        instance_hours=instance_hours,
        lambda_seconds_per_photo=seconds,
        waiting_seconds_per_photo=waiting,
        duration_hours=duration_hours,
        notes=[f"{instances} instance(s), {throughput:.2f} photos/s"],
    )


# -- comparison --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crossing:
    """Where real-time minus async changes sign. `step` names the mode whose bill jumps there (a fleet adds an
    instance), so the two bills are never equal; None for a true break-even where they are."""

    photos_per_day: float
    step: str | None = None
    jump_usd: float = 0.0  # the stepping mode's bill just above minus just below, a month


JUMP_USD = 0.01  # a month: the difference moving more than this across a zero-width bracket is a jump


def break_even(
    cost: dict[str, Callable[[float], float]],
    *,
    low: float = 10.0,
    high: float = 10_000_000.0,
    steps: int = 60,
) -> list[Crossing]:
    """Daily volumes where real-time minus async changes sign, found on a geometric grid from `low` to `high` and
    refined by bisection; each is a true crossing or a step of one mode's bill. Volumes a mode cannot serve are
    skipped."""

    def difference(volume: float) -> float | None:
        try:
            return cost[REAL_TIME](volume) - cost[ASYNC](volume)
        except CapacityError:
            return None

    ratio = (high / low) ** (1 / steps)
    grid = [low * ratio**i for i in range(steps + 1)]
    values = [difference(v) for v in grid]
    crossings = []
    points = list(zip(grid, values, strict=True))
    for (a, fa), (b, fb) in itertools.pairwise(points):
        if fa is None or fb is None or (fa > 0) == (fb > 0):
            continue
        for _ in range(60):
            middle = math.sqrt(a * b)
            fm = difference(middle)
            if fm is None:
                break
            if (fm > 0) == (fa > 0):
                a, fa = middle, fm
            else:
                b, fb = middle, fm
        crossings.append(_classify(cost, a, b, fa, fb))
    return crossings


def _classify(cost: dict[str, Callable[[float], float]], a: float, b: float, fa: float, fb: float) -> Crossing:
    if abs(fb - fa) <= JUMP_USD:
        return Crossing(math.sqrt(a * b))
    jumps = {mode: cost[mode](b) - cost[mode](a) for mode in (REAL_TIME, ASYNC)}
    mode = max(jumps, key=lambda m: abs(jumps[m]))
    return Crossing(math.sqrt(a * b), step=mode, jump_usd=jumps[mode])


def regimes(
    cost: dict[str, Callable[[float], float]],
    *,
    tolerance: float = 0.01,
    low: float = 10.0,
    high: float = 10_000_000.0,
    steps: int = 60,
) -> list[tuple[float, float, str]]:
    """Runs of daily volume (from, to, verdict) on a geometric grid: "async" or "real-time" when that mode is
    cheaper by more than `tolerance` of the dearer bill, "even" within it, "n/a" where a mode cannot keep up."""
    ratio = (high / low) ** (1 / steps)
    runs: list[tuple[float, float, str]] = []
    for i in range(steps + 1):
        volume = low * ratio**i
        try:
            real_time, asynchronous = cost[REAL_TIME](volume), cost[ASYNC](volume)
        except CapacityError:
            verdict = "n/a"
        else:
            gap = (real_time - asynchronous) / max(real_time, asynchronous)
            verdict = "async" if gap > tolerance else "real-time" if gap < -tolerance else "even"
        if runs and runs[-1][2] == verdict:
            runs[-1] = (runs[-1][0], volume, verdict)
        else:
            runs.append((volume, volume, verdict))
    return runs
