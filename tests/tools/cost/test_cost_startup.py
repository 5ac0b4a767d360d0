"""The start-up a labelling job pays every window, phase by phase, and who controls each phase."""

from __future__ import annotations

import pytest

from tools.cost.startup import AWS, DEFAULT_START_UP, PROJECT, default_start_up


def phases() -> dict[str, float]:
    return {p.name: p.seconds for p in DEFAULT_START_UP.phases}


def test_each_phase_is_its_size_over_its_rate() -> None:
    got = phases()
    # The LMI image: 18 GB on disk x 0.5 compressed = 9 GB at 5,650.3 MB / 113.8 s = 49.65 MB/s: 181.3 s
    assert got["image pull"] == pytest.approx(9_000 / (5_650.343354 / 113.8))
    # 15.1 GB of bf16 weights at 300 MB/s: 50.3 s
    assert got["model weights from S3"] == pytest.approx(15_100 / 300)
    assert got["engine start"] == 60.0


def test_provisioning_costs_latency_only_and_the_rest_is_billed_on_every_host() -> None:
    # SageMaker bills from TrainingStartTime, after the instances are launched (DescribeTrainingJob)
    unbilled = [p for p in DEFAULT_START_UP.phases if not p.billed]
    assert [p.name for p in unbilled] == ["capacity + provisioning"]
    assert unbilled[0].controlled_by == AWS
    assert DEFAULT_START_UP.total_seconds - DEFAULT_START_UP.billed_seconds == 120.0
    assert DEFAULT_START_UP.billed_seconds == pytest.approx(181.26 + 50.33 + 60 + 20 + 10, abs=0.01)
    assert all(p.controlled_by == PROJECT for p in DEFAULT_START_UP.phases if p.billed)


def test_enforce_eager_cuts_the_engine_start() -> None:
    eager = default_start_up(enforce_eager=True)
    assert DEFAULT_START_UP.billed_seconds - eager.billed_seconds == pytest.approx(60 - 25)


def test_a_measured_start_up_scales_the_billed_phases() -> None:
    measured = DEFAULT_START_UP.with_billed_seconds(600)
    assert measured.billed_seconds == pytest.approx(600)
    assert measured.total_seconds == pytest.approx(720)  # provisioning unchanged
    with pytest.raises(ValueError, match=">= 0"):
        DEFAULT_START_UP.with_billed_seconds(-1)


def test_every_phase_names_its_basis_and_every_project_phase_its_lever_or_source() -> None:
    for phase in DEFAULT_START_UP.phases:
        assert phase.basis.strip()
    levers = {p.name for p in DEFAULT_START_UP.phases if p.lever}
    assert {"image pull", "model weights from S3", "engine start"} <= levers
