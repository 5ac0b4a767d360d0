"""A failed export on rank 0 stops every rank at once (training_job/rank_zero.py), with two real processes."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from rank_zero_ranks import run_two_ranks

from training_job.rank_zero import on_rank_zero

# Far beyond the test's own wait: a rank that needed the collective's timeout to stop fails the test.
COLLECTIVE_TIMEOUT = 600  # seconds
WAIT_FOR_RANK_1 = 120  # seconds; two fresh interpreters importing torch on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_a_failed_export_on_rank_0_stops_the_other_rank_at_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Given two ranks after training, and a saved model whose export fails on rank 0 (pinpoints disagree)
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))

    # When rank 0 runs the export through on_rank_zero while it stays up (as a peer on another host sees it)
    outcome = run_two_ranks(
        model, mode="on_rank_zero", timeout=COLLECTIVE_TIMEOUT, wait=WAIT_FOR_RANK_1, port=_free_port()
    )

    # Then rank 1 stopped before rank 0 was let go, with rank 0's reason, and rank 0 failed with its own error
    assert outcome.rank1_code is not None, (
        f"rank 1 still waiting after {WAIT_FOR_RANK_1} s:\n{outcome.rank1_output}"
    )
    assert outcome.rank1_exited_while_rank0_held
    assert outcome.rank1_code == 1
    assert (
        "RankZeroFailed: the export for serving failed on rank 0 (ValueError: config.json " in outcome.rank1_output
    )
    assert "the model and the processor must agree); rank 1 stops too" in outcome.rank1_output
    assert "rank 0 failed at " in outcome.rank0_output and "ValueError: config.json" in outcome.rank0_output
    assert outcome.rank1_exit_after_failure is not None
    print(f"rank 1 exited {outcome.rank1_exit_after_failure:.3f} s after rank 0's export failed")


def test_one_process_runs_the_step_and_returns_its_result() -> None:
    assert on_rank_zero(lambda: "exported", what="the export") == "exported"
    with pytest.raises(ValueError, match="pinpoints"):
        on_rank_zero(_fail, what="the export")  # rank 0's own error, unchanged


def _fail() -> None:
    raise ValueError("pinpoints differ")
