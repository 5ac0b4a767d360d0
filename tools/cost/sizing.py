"""The defaults a measurement supports: the labeller's memory and the requests it keeps in flight.

Inputs are measurements with the command that reproduces each (docs/cost-model.md, "Sizing the defaults"):
- the normaliser's peak memory per input (`.venv/bin/python benchmarks/bench_normalize.py --repeat 3`);
- the Lambda's import baseline (Python + boto3 + Pillow + Powertools + three clients, VmHWM of a fresh process);
- the endpoint's time per photo (the seed's 674 s / 1,000) and its unloaded latency (the blog repo's
  single-threaded 1,154 s / 1,000), which bound the concurrency that saturates one instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tools.cost.fleet import Performance, upload_ceiling, utilisation_at_target
from tools.cost.prices import Prices
from tools.cost.settings import Settings
from tools.cost.system import LAMBDA_FULL_VCPU_MB, lambda_work_seconds

# Measured on 2026-12-01 on this project's 2-core CI machine (Python 3.11, Pillow 13.0).
IMPORT_BASELINE_MB = 58.0  # VmHWM after importing the handler's libraries and creating its three clients
RUNTIME_OVERHEAD_MB = 30.0  # Lambda's Python runtime client and log shipping (assumed, not measurable here)
MAX_OBJECT_MB = 50.0  # the labeller's object-size limit: the file is held in memory
DECODE_PEAK_MB_12MP = 107.0  # worst input of the benchmark: a 12-MP RGBA PNG (+21.6 MB for a 12-MP JPEG)
DECODE_LIMIT_MEGAPIXELS = 40.0  # the labeller's decoded-pixel guard
BENCHMARK_MEGAPIXELS = 12.0
MEMORY_MARGIN = 1.25
MEMORY_STEP_MB = 64


@dataclass(frozen=True)
class MemorySizing:
    peak_mb: float
    recommended_mb: int
    configured_mb: int
    work_seconds_recommended: float
    work_seconds_configured: float


def memory(settings: Settings) -> MemorySizing:
    """Peak = runtime + imports + the largest object held + the worst decode at the pixel limit; x margin."""
    decode = DECODE_PEAK_MB_12MP * DECODE_LIMIT_MEGAPIXELS / BENCHMARK_MEGAPIXELS
    peak = RUNTIME_OVERHEAD_MB + IMPORT_BASELINE_MB + MAX_OBJECT_MB + decode
    recommended = math.ceil(peak * MEMORY_MARGIN / MEMORY_STEP_MB) * MEMORY_STEP_MB
    return MemorySizing(
        peak_mb=peak,
        recommended_mb=recommended,
        configured_mb=settings.upload_memory_mb,
        work_seconds_recommended=lambda_work_seconds(recommended),
        work_seconds_configured=lambda_work_seconds(settings.upload_memory_mb),
    )


@dataclass(frozen=True)
class InFlightRow:
    per_instance: int
    throughput_share: float  # of a saturated instance, by the asymptotic bound
    waiting_seconds: float  # per photo, Little's law
    lambda_usd_per_1000: float  # duration only, at the configured memory


def in_flight(perf: Performance, settings: Settings, prices: Prices) -> list[InFlightRow]:
    """Requests in flight on one instance vs throughput and what the waiting Lambda costs (closed system)."""
    rows = []
    gb = settings.upload_memory_mb / 1024
    for n in (1, 2, 4, 6, 8, 12):
        throughput = min(n / perf.unloaded_latency, perf.photos_per_second)
        waiting = n / throughput
        seconds = waiting + lambda_work_seconds(settings.upload_memory_mb)
        rows.append(
            InFlightRow(
                per_instance=n,
                throughput_share=throughput / perf.photos_per_second,
                waiting_seconds=waiting,
                lambda_usd_per_1000=seconds * gb * prices.lambda_gb_second_x86 * 1000,
            )
        )
    return rows


@dataclass(frozen=True)
class Recommendation:
    key: str
    configured: str
    recommended: str
    reason: str


def recommendations(perf: Performance, settings: Settings) -> list[Recommendation]:
    sized = memory(settings)
    saturating = math.ceil(perf.saturating_in_flight)
    ceiling = upload_ceiling(settings)
    rho = utilisation_at_target(settings.target_in_flight)
    full_fleet = math.ceil(settings.max_capacity * settings.target_in_flight)
    cpu = min(1.0, sized.recommended_mb / LAMBDA_FULL_VCPU_MB)
    return [
        Recommendation(
            "upload.function_memory_mb, backfill.function_memory_mb",
            f"{settings.upload_memory_mb}, {settings.backfill_memory_mb}",
            str(sized.recommended_mb),
            f"worst-case peak {sized.peak_mb:.0f} MB x {MEMORY_MARGIN} margin; the waiting dominates the billed "
            f"time, so fewer MB cost less even though the normaliser gets {cpu:.2f} vCPU "
            f"({sized.work_seconds_recommended:.2f} s of work a photo instead of "
            f"{sized.work_seconds_configured:.2f} s)",
        ),
        Recommendation(
            "Lambda architecture",
            "x86_64",
            "arm64",
            "20 % cheaper GB-s; needs aarch64 wheels in the bundler"
            " (stacks/common/constants.LAMBDA_WHEEL_PLATFORMS)",
        ),
        Recommendation(
            "backfill.max_concurrency",
            str(settings.backfill_max_concurrency),
            f"{settings.backfill_max_concurrency} (keep; {saturating}-8 per instance)",
            "instances to fill x the smallest concurrency that saturates one; an instance saturates at "
            f">= {perf.saturating_in_flight:.2f} in flight by the asymptotic bound "
            "(unloaded latency / time per photo) and was measured at 96 % of its best at 8 (blog repo); every "
            "request beyond saturation only adds Lambda waiting (Little's law). Measure the curve between 1 and 8 "
            "with benchmarks/bench_serving.py before lowering it",
        ),
        Recommendation(
            "upload.max_concurrency",
            str(settings.upload_max_concurrency),
            str(full_fleet),
            f"target tracking adds an instance per {settings.target_in_flight:g} requests in flight, so "
            f"{settings.upload_max_concurrency} in flight can never drive more than {ceiling} of the "
            f"{settings.max_capacity} instances: the upload path tops out at {ceiling} x "
            f"{perf.photos_per_second * 86400 * rho:,.0f} photos/day at the target's utilisation ({rho:.0%}). "
            f"max_capacity x target = {full_fleet} reaches the whole fleet (the synth check's "
            f"max_capacity x max_rolling_batch_size = {settings.max_capacity * settings.engine_batch} still holds "
            f"with the backfill's {settings.backfill_max_concurrency}); right after a deployment, on one "
            f"instance, the last of {full_fleet + settings.backfill_max_concurrency} requests waits "
            f"~{(full_fleet + settings.backfill_max_concurrency) * perf.seconds_per_photo:.0f} s, under the 30-s "
            "rollback latency alarm",
        ),
    ]
