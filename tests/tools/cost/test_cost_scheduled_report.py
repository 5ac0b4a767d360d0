"""`python -m tools.cost_estimate scheduled`: start-up, windows, issue 18's targets, backfill and deadline."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tools.cost.cli import main
from tools.cost.scheduled_report import TARGETS


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["scheduled", *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def run_json(*argv: str) -> Any:
    code, out, err = run(*argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_it_prints_every_target_with_its_verdict_and_the_start_up_breakdown() -> None:
    code, out, err = run()
    assert code == 0, err
    for target in TARGETS:
        assert target.label in out
    assert "Start-up of each host, every window" in out
    for phase in ("capacity + provisioning", "image pull", "model weights from S3", "engine start"):
        assert phase in out
    assert "Backfill of 20,000,000 photos on the job" in out


def test_each_verdict_is_the_comparison_it_claims() -> None:
    report = run_json()
    assert [t["target"] for t in report["targets"]] == [t.label for t in TARGETS]
    for target in report["targets"]:
        assert target["met"] == (target["usd_per_1000"] <= target["limit"])
        if not target["met"]:
            assert target["levers"], target["target"]
    # A Spot target missed at the configured discount names the discount that would meet it, and that is more
    backfill = report["backfill"]
    for target in report["targets"]:
        if not target["met"] and "Spot" in target["target"] and target["spot_discount_needed"] is not None:
            assert target["spot_discount_needed"] > 0.65
    assert backfill["target_usd"] == 2_500
    assert [r["hosts"] for r in backfill["by_hosts"]] == [4, 8, 16, 32]
    days = [r["days"] for r in backfill["by_hosts"]]
    assert days == sorted(days, reverse=True)


def test_a_cheaper_discount_or_the_compact_profile_moves_the_figures_the_right_way() -> None:
    base = run_json("--per-day", "10k", "--windows", "6")
    cheap = run_json("--per-day", "10k", "--windows", "6", "--spot-discount", "0.9")
    compact = run_json("--per-day", "10k", "--windows", "6", "--profile", "compact")
    spot = 0  # the grid is Spot first, then on-demand
    assert cheap["grid"][spot]["usd_per_1000"] < base["grid"][spot]["usd_per_1000"]
    assert compact["grid"][spot]["usd_per_1000"] < base["grid"][spot]["usd_per_1000"]
    assert base["grid"][1]["usd_per_1000"] == cheap["grid"][1]["usd_per_1000"]  # on-demand ignores the discount


def test_hosts_for_a_deadline() -> None:
    report = run_json("--backfill", "20M", "--deadline-days", "14")
    deadline = report["deadline"]
    assert deadline["duration_days"] <= 14
    assert deadline["hosts"] > 4  # the default 4 hosts take longer
    code, out, _ = run("--backfill", "20M", "--deadline-days", "14")
    assert code == 0
    assert f"Within 14 days: scheduled.max_hosts {deadline['hosts']}" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--spot-discount", "1.2"], "must be between 0 and 1"),
        (["--spot-discount", "1"], "must be below 1"),
        (["--on-demand-share", "-0.1"], "non-negative"),
        (["--deadline-days", "0"], "must be a positive number"),
    ],
)
def test_bad_inputs_exit_2_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["scheduled", *argv], stdout=io.StringIO(), stderr=io.StringIO())
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_cost_pages_backfill_figures_are_what_the_cli_prints() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "docs" / "cost.md").read_text()
    report = run_json("--backfill", "20M", "--deadline-days", "14")
    backfill, deadline = report["backfill"], report["deadline"]
    assert (
        f"${backfill['usd']:,.0f} in {backfill['days']:.0f} days on 4 Spot hosts ({deadline['hosts']} hosts "
        f"meet a 14-day deadline for ${deadline['usd']:,.0f})"
    ) in " ".join(readme.split())
