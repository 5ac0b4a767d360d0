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

from tools.cost.fleet import (
    ASYNC,
    MODES,
    REAL_TIME,
    Assumptions,
    CapacityError,
    Performance,
    async_day,
    hourly_rates,
    real_time_day,
)
from tools.cost.prices import Prices
from tools.cost.settings import Settings

__all__ = ["ASYNC", "MODES", "REAL_TIME", "Assumptions", "CapacityError", "Performance"]

HOURS_PER_MONTH = 730.0  # AWS's billing convention (8,760 / 12)
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
DEFAULT_ASSUMPTIONS = Assumptions()

# -- the labeller Lambda -----------------------------------------------------------------------------------------
LAMBDA_FULL_VCPU_MB = 1769  # Lambda allots CPU in proportion to memory: one vCPU at 1,769 MB
NORMALISE_CPU_SECONDS = 0.075  # 12-MP JPEG on one full core (benchmarks/bench_normalize.py, README)
IO_SECONDS_PER_PHOTO = 0.10  # GetObject of a ~3 MB photo + GetItem + conditional PutItem (assumed)
ASYNC_SUBMIT_IO_SECONDS = 0.05  # PutObject of the ~70 kB request + InvokeEndpointAsync (assumed)
WRITER_SECONDS_PER_PHOTO = 0.05  # label writer: GetObject of the < 1 kB answer + PutItem (assumed)

# -- requests per photo ------------------------------------------------------------------------------------------
DYNAMODB_READ_UNITS = 1  # one strongly consistent GetItem of an item < 4 KB
DYNAMODB_WRITE_UNITS = 3  # PutItem of an item < 1 KB into the table and both ALL-projection GSIs
LOG_BYTES_PER_PHOTO = 1_000  # the per-record JSON log line(s) with image_uri (assumed)
LOG_BYTES_PER_INVOCATION = 1_500  # START/END/REPORT lines + the EMF metrics document (assumed)
# PhotosLabeled, PhotosNeedsReview, PhotosRejected, PhotosSkipped, TransientFailures, EndpointLatency
BASE_METRICS = 6
SQS_IDLE_POLLERS = 5  # Lambda's SQS event source long-polls with 5 pollers when the queue is empty
SQS_LONG_POLL_SECONDS = 20
KMS_KEYS = 2  # the data key and the queue key
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
) -> list[tuple[str, float, str]]:
    """(name, USD, basis) for every per-photo charge except the endpoint, over `photos` photos."""
    gets, puts = (3, 2) if mode == ASYNC else (1, 0)
    log_gb = (photos * LOG_BYTES_PER_PHOTO + invocations * LOG_BYTES_PER_INVOCATION) / 1e9
    parts = [
        (
            "Lambda duration",
            lambda_gb_seconds * _gb_second(prices, assumptions),
            f"{assumptions.architecture} GB-s",
        ),
        ("Lambda requests", invocations * prices.lambda_per_request, "one per batch"),
        (
            "S3 requests",
            photos * (gets * prices.s3_get + puts * prices.s3_put),
            f"{gets} GET + {puts} PUT a photo",
        ),
        ("SQS requests", queue_requests * prices.sqs_per_request, "send, receive, delete"),
        (
            "DynamoDB",
            photos
            * (
                DYNAMODB_READ_UNITS * prices.dynamodb_read_unit + DYNAMODB_WRITE_UNITS * prices.dynamodb_write_unit
            ),
            f"{DYNAMODB_READ_UNITS} RRU + {DYNAMODB_WRITE_UNITS} WRU a photo",
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


def _fixed_monthly(settings: Settings, prices: Prices, *, queues: int) -> list[tuple[str, float, str]]:
    idle_polls = queues * SQS_IDLE_POLLERS * HOURS_PER_MONTH * 3600 / SQS_LONG_POLL_SECONDS
    return [
        ("SQS requests", idle_polls * prices.sqs_per_request, f"{queues} queue(s) long-polled when empty"),
        (
            "CloudWatch + X-Ray",
            (BASE_METRICS + settings.labels) * prices.custom_metric_month,
            f"{BASE_METRICS + settings.labels} custom metrics",
        ),
        ("KMS keys", KMS_KEYS * prices.kms_key_month, f"{KMS_KEYS} customer-managed keys"),
    ]


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
        queues = 1
    else:
        # Submitter: normalise + PutObject + InvokeEndpointAsync, no waiting. Writer (SNS -> SQS -> Lambda): read
        # the answer, write the label.
        seconds = work + ASYNC_SUBMIT_IO_SECONDS + WRITER_SECONDS_PER_PHOTO
        invocations = 2 * batches
        queue_requests = 2 * (photos + 2 * batches)
        queues = 2
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
    )
    parts = _merge([endpoint, *variable], _fixed_monthly(settings, prices, queues=queues), photos)
    return Scenario(
        mode=mode,
        path="upload",
        photos=photos,
        parts=parts,
        instance_hours=instance_hours_day,
        lambda_seconds_per_photo=seconds,
        waiting_seconds_per_photo=waiting if mode == REAL_TIME else 0.0,
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


def break_even(
    cost: dict[str, Callable[[float], float]],
    *,
    low: float = 10.0,
    high: float = 10_000_000.0,
    steps: int = 60,
) -> list[float]:
    """Daily volumes where the two modes cost the same (real-time minus async changes sign), found on a
    geometric grid from `low` to `high` and refined by bisection. Volumes a mode cannot serve are skipped."""

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
        for _ in range(40):
            middle = math.sqrt(a * b)
            fm = difference(middle)
            if fm is None:
                break
            if (fm > 0) == (fa > 0):
                a, fa = middle, fm
            else:
                b = middle
        crossings.append(math.sqrt(a * b))
    return crossings


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
