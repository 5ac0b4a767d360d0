"""How long the other rank takes to stop when the export fails on rank 0: a barrier vs training_job.rank_zero.

    .venv/bin/python benchmarks/bench_rank_zero_failure.py [--timeout 30] [--repeat 3]

Two real processes (torch.distributed gloo on CPU) meet after "training"; rank 0 runs the real export for serving
on a tiny model, made to fail, and stays up afterwards as a rank on another host looks to NCCL over EFA
(tests/training_job/rank_zero_ranks.py explains the harness). `barrier` is train.py's old ending (export on rank 0,
then wait_for_everyone); `on_rank_zero` is its current one. --timeout is the process group's collective timeout
(DeepSpeed's default is 600 s; a shorter one keeps the run short, and the barrier's figure is that timeout).

Prints, per mode, the median seconds from rank 0's failure to rank 1's exit and how rank 1 stopped.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "training_job"))

from rank_zero_ranks import run_two_ranks  # noqa: E402

from classification.contract import DEFAULT_TAXONOMY_PATH, Taxonomy  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _how(output: str) -> str:
    for line in output.splitlines():
        if "failed at" in line:
            return line.split(": ", 1)[1][:90]
    return output.strip().splitlines()[-1][:90] if output.strip() else "(no output)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=30.0, help="collective timeout, seconds (%(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (%(default)s)")
    args = parser.parse_args()

    from training_job.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_model(Path(folder) / "model", Taxonomy.load(DEFAULT_TAXONOMY_PATH))
        print(f"collective timeout {args.timeout:g} s, {args.repeat} run(s) per mode, gloo on CPU")
        for mode in ("barrier", "on_rank_zero"):
            delays, how = [], ""
            for _ in range(args.repeat):
                outcome = run_two_ranks(
                    model, mode=mode, timeout=args.timeout, wait=args.timeout + 120, port=_free_port()
                )
                if outcome.rank1_exit_after_failure is None:
                    print(f"{mode}: rank 1 did not stop within {args.timeout + 120:g} s")
                    return 1
                delays.append(outcome.rank1_exit_after_failure)
                how = _how(outcome.rank1_output)
            print(f"{mode:>13}: rank 1 stopped {statistics.median(delays):7.2f} s after rank 0 failed ({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
