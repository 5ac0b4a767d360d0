"""Synth-time check: the two labellers never keep more requests in flight than the endpoint's engines batch.

Every request in flight on the endpoint is one Lambda invocation waiting on it: the upload labeller's event
source runs at most `upload.max_concurrency` invocations and handles a batch's records one after another; the
backfill runs at most `backfill.max_concurrency` batches and labels a batch's photos one after another. Inside
the container vLLM runs up to `option.max_rolling_batch_size` sequences at once (model_code/serving.properties);
the rest wait in LMI's queue, and that wait counts in SageMaker's ModelLatency.

The workload is prefill-bound: one ml.g5.xlarge labels ~1 photo per 0.67 s however the requests are batched
(674 s per 1,000 photos, the seed's measurement). A request that finds N requests ahead of it on one instance
therefore answers after ~N x 0.67 s. With the old defaults (24 + 16 = 40 in flight) on the one instance a
deployment starts with, that is ~27 s: at the rollback alarm's p90 ModelLatency bar (30 s) and half the 60-s
invoke timeout, so a deployment during a backfill would be rolled back by mistake. With the defaults, 24 + 8 = 32
(upload.max_concurrency sized to reach the whole fleet, docs/cost.md "Sizing the defaults"), it is ~22 s.

The check keeps the sum at or below what the fleet runs at once at full scale (endpoint.max_capacity x
option.max_rolling_batch_size): once autoscaling has caught up, no request waits outside an engine batch.
"""

from __future__ import annotations

from stacks.common import constants
from stacks.config import ConfigError

UPLOAD_KEY = f"{constants.CONTEXT_KEY}.upload.max_concurrency"
BACKFILL_KEY = f"{constants.CONTEXT_KEY}.backfill.max_concurrency"


def queueing_seconds(in_flight: int, instances: int) -> float:
    """Worst-case wait of the last request when `in_flight` requests share `instances` prefill-bound instances."""
    return in_flight / instances * constants.ENDPOINT_SECONDS_PER_PHOTO


def check_endpoint_load(
    *, upload_max_concurrency: int, backfill_max_concurrency: int, max_capacity: int, engine_batch: int
) -> None:
    """Raise ConfigError naming both concurrency keys when their sum exceeds max_capacity x engine_batch."""
    in_flight = upload_max_concurrency + backfill_max_concurrency
    runs_at_once = max_capacity * engine_batch
    if in_flight <= runs_at_once:
        return
    raise ConfigError(
        f"{UPLOAD_KEY} + {BACKFILL_KEY}",
        f"{upload_max_concurrency} + {backfill_max_concurrency} = {in_flight} requests in flight exceed what the "
        f"endpoint runs at once at full scale: endpoint.max_capacity ({max_capacity}) x "
        f"option.max_rolling_batch_size ({engine_batch}, model_code/serving.properties) = {runs_at_once}. The "
        f"rest would queue in the container (~{queueing_seconds(in_flight, max_capacity):.0f} s at "
        f"{max_capacity} instance(s)) and count towards the rollback latency alarm; lower one of the two or "
        "raise endpoint.max_capacity",
    )


__all__ = ["check_endpoint_load", "queueing_seconds"]
