"""Run one step on rank 0 only, and tell every rank at once whether it worked.

After training, the export for serving runs on the main process while the other ranks wait for it. With a plain
barrier after it, a failure there tells them nothing: rank 0's process ends, and ranks on other hosts stay in the
barrier until the process group's timeout (DeepSpeed 0.19's `default_pg_timeout`, 10 min unless DEEPSPEED_TIMEOUT
says otherwise; deepspeed/constants.py), because NCCL over EFA does not notice that a peer died. Meanwhile every
host of the job keeps running. `on_rank_zero` replaces that barrier with one broadcast of the outcome: the other
ranks wait in it as they did in the barrier, and on a failure every rank raises at once, with rank 0's error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class RankZeroFailed(RuntimeError):
    """Raised on the other ranks when the step failed on rank 0."""


def on_rank_zero(action: Callable[[], T], *, what: str) -> T | None:
    """Run `action` on rank 0; every rank returns (rank 0 with its result, the others None) or every rank raises.

    Without an initialised process group (one process) it simply runs `action`. Rank 0 re-raises its own error;
    the others raise RankZeroFailed naming `what` and rank 0's error.
    """
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    result: T | None = None
    failure: BaseException | None = None
    outcome: list[str | None] = [None]
    if rank == 0:
        try:
            result = action()
        except Exception as error:  # every failure must reach the other ranks, whatever its type
            failure = error
            outcome = [f"{type(error).__name__}: {error}"]
    if distributed:
        dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    if outcome[0] is not None:
        raise RankZeroFailed(f"{what} failed on rank 0 ({outcome[0]}); rank {rank} stops too")
    return result
