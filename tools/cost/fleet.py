"""Endpoint fleets hour by hour: real-time target tracking with a floor, asynchronous scaling to zero.

Pure arithmetic over `Settings` and `Performance`; docs/cost-model.md explains each assumption and its source.
Each hour also carries the worst time a photo uploaded in it waits for its label (docs/cost-model.md, "Latency").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tools.cost.fixed import ASYNC, REAL_TIME, SCHEDULED
from tools.cost.settings import Settings

MODES = (REAL_TIME, ASYNC)  # the endpoint modes; scheduled mode has no endpoint (tools/cost/job.py)
ALL_MODES = (REAL_TIME, ASYNC, SCHEDULED)

# -- autoscaling (Application Auto Scaling target tracking) ------------------------------------------------------
SCALE_IN_ALARM_MINUTES = 15.0  # target tracking scales in after 15 one-minute datapoints below the target
COLD_START_MINUTES = 10.0  # a new ml.g5.xlarge: provisioning + LMI image pull + 15 GB of weights (assumed)
ASYNC_IDLE_MINUTES = SCALE_IN_ALARM_MINUTES  # an idle async endpoint reaches 0 instances after the scale-in alarm
# stacks/serving/async_scaling.py: HasBacklogWithoutCapacity >= 1 for 2 of 2 one-minute periods
# starts the first instance.
SCALE_FROM_ZERO_ALARM_MINUTES = 2.0


class CapacityError(ValueError):
    """The configured fleet cannot keep up with the traffic; the message says what would."""


@dataclass(frozen=True)
class Performance:
    """One instance: `seconds_per_photo` when saturated; `unloaded_latency` for a request that finds it idle."""

    seconds_per_photo: float
    unloaded_latency: float

    @property
    def photos_per_second(self) -> float:
        return 1.0 / self.seconds_per_photo

    @property
    def saturating_in_flight(self) -> float:
        # Operational analysis' asymptotic bound: below N* = latency / time per photo an instance idles.
        return self.unloaded_latency / self.seconds_per_photo


@dataclass(frozen=True)
class Assumptions:
    cold_start_minutes: float = COLD_START_MINUTES
    async_idle_minutes: float = ASYNC_IDLE_MINUTES
    architecture: str = "x86_64"  # or "arm64": 20 % cheaper GB-s


# -- the daily curve ---------------------------------------------------------------------------------------------


def hourly_rates(photos_per_day: float, curve: Sequence[float] | None = None) -> list[float]:
    """Photos per second in each hour of the day; `curve` holds 24 relative weights (None: flat)."""
    if photos_per_day < 0:
        raise ValueError(f"photos per day must be >= 0, got {photos_per_day}")
    weights = list(curve) if curve is not None else [1.0] * 24
    if len(weights) != 24 or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("the daily curve needs 24 non-negative hourly values, not all zero")
    total = sum(weights)
    return [photos_per_day * w / total / 3600 for w in weights]


def utilisation_at_target(target_in_flight: float) -> float:
    """Utilisation at which target tracking holds the fleet: continuous batching is modelled as a processor-
    sharing queue, whose mean number in system rho / (1 - rho) equals the target T, so rho = T / (T + 1)."""
    return target_in_flight / (target_in_flight + 1)


def response_seconds(rate: float, instances: int, perf: Performance) -> float:
    """Mean time a request spends on the endpoint: the processor-sharing time S / (1 - rho), never below the
    unloaded latency. Only meaningful for rho < 1."""
    rho = rate / (instances * perf.photos_per_second)
    return max(perf.unloaded_latency, perf.seconds_per_photo / (1 - rho))


# -- fleets ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hour:
    instances: float  # instance-hours billed in this hour (transitions included)
    processed: float  # photos labelled in this hour
    waiting_seconds: float  # mean seconds a labeller invocation waits per photo (real-time only)
    worst_seconds: float = 0.0  # the longest a photo uploaded in this hour waits for its label


def async_utilisation() -> float:
    """Utilisation at which target tracking on ApproximateBacklogSizePerInstance holds an async fleet.

    The metric counts requests queued or in process per instance. An instance that keeps up holds at most its
    concurrent invocations (8), far below the target (async_inference.backlog_target_per_instance, 200), so
    target tracking removes instances until a standing queue of the target builds: only a saturated fleet holds
    it. The fleet is therefore ceil(demand / capacity) instances, not the real-time rule's T / (T + 1).
    """
    return 1.0


def _drain_seconds(backlog: float, per_second: float) -> float:
    return backlog / per_second if backlog > 0 and per_second > 0 else 0.0


def upload_ceiling(settings: Settings) -> int:
    """Instances the upload path alone can drive: at most upload.max_concurrency requests are in flight, and
    target tracking adds an instance per `target_in_flight` of them."""
    by_lambda = math.ceil(settings.upload_max_concurrency / settings.target_in_flight - 1e-9)
    return min(settings.max_capacity, max(settings.min_capacity, by_lambda))


def _scale_in_hours(removed: int, cooldown_seconds: float, first_minutes: float = SCALE_IN_ALARM_MINUTES) -> float:
    # The first instance leaves after the scale-in alarm (an async endpoint's last one after its idle time), each
    # further one a cooldown later; each counts at most the hour.
    return sum(min(1.0, first_minutes / 60 + i * cooldown_seconds / 3600) for i in range(max(0, removed)))


def real_time_day(
    rates: Sequence[float], perf: Performance, settings: Settings, assumptions: Assumptions
) -> list[Hour]:
    """Hour by hour: instances target tracking keeps (never below min_capacity), backlog carried over."""
    ceiling = upload_ceiling(settings)
    hourly_capacity = perf.photos_per_second * 3600
    rho = utilisation_at_target(settings.target_in_flight)
    hours: list[Hour] = []
    previous, backlog, backlog_after_first_day = settings.min_capacity, 0.0, 0.0
    for day in range(2):  # the second day starts from the first day's night: a steady state
        hours = []
        for rate in rates:
            demand = rate * 3600 + backlog
            wanted = math.ceil(demand / (hourly_capacity * rho) - 1e-9)
            instances = min(max(wanted, settings.min_capacity), ceiling)
            processed = min(demand, instances * hourly_capacity)
            backlog = demand - processed
            billed = instances + _transition_hours(previous, instances, settings, assumptions)
            throughput = processed / 3600
            if backlog > 0 or throughput >= instances * perf.photos_per_second:
                # Saturated: every one of the Lambda's concurrent invocations waits (Little's law).
                waiting = settings.upload_max_concurrency / throughput
            elif throughput > 0:
                waiting = min(
                    response_seconds(throughput, instances, perf), settings.upload_max_concurrency / throughput
                )
            else:
                waiting = 0.0
            # Records of a batch are labelled one after another; a carried backlog drains first.
            per_request = (
                response_seconds(throughput, instances, perf)
                if 0 < throughput < instances * perf.photos_per_second
                else waiting
            )
            worst = _drain_seconds(backlog, throughput) + settings.upload_batch_size * max(
                per_request, perf.unloaded_latency
            )
            hours.append(Hour(billed, processed, waiting, worst))
            previous = instances
        if day == 0:
            backlog_after_first_day = backlog
    if backlog > backlog_after_first_day + 1:
        per_day = ceiling * hourly_capacity * 24
        raise CapacityError(
            f"the real-time upload path cannot keep up: {sum(rates) * 3600:,.0f} photos/day against "
            f"{per_day:,.0f}/day at its ceiling of {ceiling} instance(s) (min(endpoint.max_capacity, "
            "upload.max_concurrency / endpoint.target_concurrent_requests_per_model)); raise both"
        )
    return hours


def _transition_hours(previous: int, now: int, settings: Settings, assumptions: Assumptions) -> float:
    if now > previous:  # new instances are billed while they load the model
        return (now - previous) * assumptions.cold_start_minutes / 60
    return _scale_in_hours(previous - now, settings.scale_in_cooldown_seconds)


def async_on_fraction(rate: float, assumptions: Assumptions) -> float:
    """Share of an hour one async instance is billed when arrivals (Poisson, `rate` per second) fit one instance.

    A cycle: an arrival finds 0 instances -> cold start C (billed) -> on until no request came for G ->
    off until the next arrival. From an arrival, the expected time until a gap of G ends is
    (e^(rate G) - 1) / rate; the off time is 1 / rate (memoryless). So the on share is
    (C + (e^(rate G) - 1) / rate) / (C + e^(rate G) / rate).
    """
    if rate <= 0:
        return 0.0
    cold = assumptions.cold_start_minutes * 60
    idle = assumptions.async_idle_minutes * 60
    exponent = rate * idle
    if exponent > 50:  # e^50: the instance is never idle long enough to stop
        return 1.0
    grow = math.exp(exponent)
    return (cold + (grow - 1) / rate) / (cold + grow / rate)


def async_day(
    rates: Sequence[float], perf: Performance, settings: Settings, assumptions: Assumptions
) -> list[Hour]:
    """Hour by hour: 0 instances when idle, one instance part of the hour at low rates, else target tracking on
    the backlog per instance (`async_utilisation`) up to endpoint.max_capacity (the Lambda's concurrency does not
    bound an async backlog)."""
    hourly_capacity = perf.photos_per_second * 3600
    rho = async_utilisation()
    hours: list[Hour] = []
    previous, backlog, backlog_after_first_day = 0, 0.0, 0.0
    cooldown, idle = settings.scale_in_cooldown_seconds, assumptions.async_idle_minutes
    # A request waits behind the standing queue target tracking keeps (the backlog target per instance).
    queued = settings.async_backlog_target * perf.seconds_per_photo + perf.unloaded_latency
    from_zero = (SCALE_FROM_ZERO_ALARM_MINUTES + assumptions.cold_start_minutes) * 60
    for day in range(2):
        hours = []
        for rate in rates:
            demand = rate * 3600 + backlog
            wanted = math.ceil(demand / (hourly_capacity * rho) - 1e-9)
            if wanted <= 1 and backlog == 0:
                processed, backlog = demand, 0.0
                if rate > 0:  # at most one instance, on part of the hour; a larger fleet shrinks to it
                    instances = 1
                    on = async_on_fraction(rate, assumptions)
                    billed = on + _scale_in_hours(previous - 1, cooldown, idle)
                    worst = queued + (from_zero if on < 1.0 or previous == 0 else 0.0)
                else:  # no photo this hour: whatever runs idles out, then nothing is billed
                    instances = 0
                    billed = _scale_in_hours(previous, cooldown, idle)
                    worst = 0.0
            else:
                instances = min(wanted, settings.max_capacity)
                processed = min(demand, instances * hourly_capacity)
                backlog = demand - processed
                billed = instances + _transition_hours(previous, instances, settings, assumptions)
                worst = queued + _drain_seconds(backlog, processed / 3600) + (from_zero if previous == 0 else 0.0)
            hours.append(Hour(billed, processed, 0.0, worst))
            previous = instances
        if day == 0:
            backlog_after_first_day = backlog
    if backlog > backlog_after_first_day + 1:
        raise CapacityError(
            f"the async endpoint cannot keep up: {sum(rates) * 3600:,.0f} photos/day against "
            f"{settings.max_capacity * hourly_capacity * 24:,.0f}/day at endpoint.max_capacity "
            f"({settings.max_capacity}); raise it"
        )
    return hours
