"""Two ranks (torch.distributed gloo, CPU) meeting after training, where the export fails on rank 0.

Each rank is this file run as a process:

    python tests/training_job/rank_zero_ranks.py RANK PORT MODEL_DIR {on_rank_zero|barrier} TIMEOUT_SECONDS

`on_rank_zero` is what training_job.train does after the save; `barrier` is what it did before (export on rank 0,
then a barrier). The export is the real one, made to fail: MODEL_DIR is a saved model whose config.json carries the
compact profile's pinpoints and the export is asked for the stock ones.

The failed rank 0 does not exit until the harness lets it (it reads stdin to its end): gloo notices a dead peer
through its TCP connection at once, NCCL over EFA across hosts does not, so a rank 0 that stays up is how a peer on
another host sees a failed rank 0. Whatever reaches rank 1 then comes through the collective itself.
`run_two_ranks` starts both, times rank 1's exit from rank 0's failure, then releases rank 0. The test
(test_rank_zero.py) and benchmarks/bench_rank_zero_failure.py use it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FAILED = "failed at "


def _rank_main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO_ROOT))
    import torch.distributed as dist

    from classification.image_tokens import GRID_PINPOINTS
    from training_job.rank_zero import on_rank_zero
    from training_job.serving_export import export_for_serving

    rank, port, model_dir, mode, timeout = int(argv[0]), argv[1], argv[2], argv[3], float(argv[4])
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=timeout),
    )
    dist.barrier()  # both ranks are up: training has ended

    def export() -> None:
        export_for_serving(model_dir, pinpoints=GRID_PINPOINTS["stock"])  # disagrees with config.json: raises

    try:
        if mode == "on_rank_zero":
            on_rank_zero(export, what="the export for serving")
        else:
            if rank == 0:
                export()
            dist.barrier()
    except Exception as error:
        print(f"rank {rank} {FAILED}{time.time():.3f}: {type(error).__name__}: {error}", flush=True)
        if rank == 0:
            sys.stdin.read()  # held by the harness: to rank 1, rank 0 has not gone away
        return 1
    print(f"rank {rank} done", flush=True)
    return 0


@dataclass(frozen=True)
class Outcome:
    rank0_output: str
    rank1_output: str
    rank1_code: int | None  # None: still running when the harness gave up waiting
    rank1_exit_after_failure: float | None  # seconds from rank 0's failure to rank 1's exit
    rank1_exited_while_rank0_held: bool


def _failed_at(output: str) -> float | None:
    for line in output.splitlines():
        if FAILED in line:
            return float(line.split(FAILED, 1)[1].split(":", 1)[0])
    return None


def run_two_ranks(model_dir: Path, *, mode: str, timeout: float, wait: float, port: int) -> Outcome:
    """Start rank 0 and rank 1; wait up to `wait` s for rank 1 to exit, then release and collect rank 0."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, __file__, "", str(port), str(model_dir), mode, str(timeout)]
    ranks = [
        subprocess.Popen(
            [*args[:2], str(rank), *args[3:]],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        try:
            rank1_output, _ = ranks[1].communicate(timeout=wait)
            exited_at: float | None = time.time()
        except subprocess.TimeoutExpired:
            ranks[1].kill()
            rank1_output, _ = ranks[1].communicate()
            exited_at = None
        held = ranks[0].poll() is None
        rank0_output, _ = ranks[0].communicate(input="", timeout=60)  # release rank 0
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
                process.wait()
    failed_at = _failed_at(rank0_output)
    delay = exited_at - failed_at if exited_at is not None and failed_at is not None else None
    return Outcome(
        rank0_output=rank0_output,
        rank1_output=rank1_output,
        rank1_code=None if exited_at is None else ranks[1].returncode,
        rank1_exit_after_failure=delay,
        rank1_exited_while_rank0_held=exited_at is not None and held,
    )


if __name__ == "__main__":
    sys.exit(_rank_main(sys.argv[1:]))
