"""The whole-system reports as a user runs them: python -m tools.cost_estimate traffic | volumes | sizing."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools.cost.cli import main

PROJECT_ROOT = Path(__file__).resolve().parents[3]
BUSINESS_HOURS = ["0"] * 8 + ["1"] * 12 + ["0"] * 4


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def run_json(*argv: str) -> Any:
    code, out, err = run(*argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_traffic_prints_every_part_for_the_three_modes_and_the_dominant_one() -> None:
    code, out, err = run("traffic", "--per-day", "10k", "--backfill", "20M")
    assert code == 0, err
    for part in ("Endpoint", "Lambda duration", "S3 requests", "SQS requests", "DynamoDB", "CloudWatch + X-Ray"):
        assert part in out
    assert "SNS" in out  # async only
    assert "Labelling job" in out  # scheduled only
    assert "Alarms + dashboard" in out and "KMS keys" in out  # fixed monthly costs
    assert "Step Functions" in out  # backfill and scheduled windows
    assert "dominant part" in out
    assert "Break-even" in out
    assert "Backfill: 20,000,000 photos once" in out
    report = run_json("traffic", "--per-day", "10k", "--backfill", "20M")
    assert [s["mode"] for s in report["upload"]] == ["real-time", "async", "scheduled"]
    assert [s["mode"] for s in report["backfill"]] == ["real-time", "async", "scheduled"]
    assert all(s["worst_minutes"] > 0 for s in report["upload"])


def test_one_idle_instance_dominates_ten_thousand_uploads_a_day() -> None:
    # The figure: one ml.g5.xlarge all day is ~$34; 10,000 uploads a day => ~$3.40 per 1,000 photos
    report = run_json("traffic", "--per-day", "10000")
    real_time = report["upload"][0]
    endpoint = next(p for p in real_time["parts"] if p["name"] == "Endpoint")
    assert endpoint["usd_per_1000"] == pytest.approx(24 * 1.408 / 10, rel=1e-9)  # $3.379
    assert endpoint["usd_per_month"] / sum(p["usd_per_month"] for p in real_time["parts"]) > 0.9


def test_the_compact_profile_lambda_waits_what_littles_law_says_on_a_saturated_backfill() -> None:
    # Compact, calibrated on time: 0.674 s x 0.55 (measured) = 0.3707 s a photo, 2.70 photos/s an instance. The
    # backfill's 8 in flight drive ceil(8/6) = 2 instances: 5.40 photos/s, so each photo waits 8 / 5.40 = 1.48 s
    report = run_json("traffic", "--per-day", "10000", "--backfill", "1M", "--profile", "compact")
    real_time = report["backfill"][0]
    assert real_time["waiting_seconds_per_photo"] == pytest.approx(8 / (2 / (0.674 * 0.55)), rel=1e-6)


def test_the_system_reports_calibrate_on_time_not_tokens() -> None:
    # Stock: the seed's measured 674 s per 1,000 photos; compact: x0.55 of that (measured time), not the x0.48
    # of its tokens. Photo sizes change the time a photo takes only with --calibration tokens.
    stock = run_json("sizing")["memory"][1]
    assert "0.674 s a photo saturated" in stock
    compact = run_json("sizing", "--profile", "compact")["memory"][1]
    assert f"{0.674 * 0.55:.3f} s a photo saturated" in compact
    wide = run_json("traffic", "--per-day", "10k", "--backfill", "1M", "--size", "1920x1080")
    default = run_json("traffic", "--per-day", "10k", "--backfill", "1M")
    assert wide["backfill"][0]["duration_hours"] == default["backfill"][0]["duration_hours"]


def test_a_business_hours_curve_lets_async_scale_to_zero_at_night() -> None:
    flat = run_json("traffic", "--per-day", "10000")
    daytime = run_json("traffic", "--per-day", "10000", "--hourly", *BUSINESS_HOURS)
    # Real-time keeps its floor of one instance all day either way; async is billed ~12 h plus transitions
    assert daytime["upload"][0]["instance_hours"] == pytest.approx(flat["upload"][0]["instance_hours"])
    assert daytime["upload"][1]["instance_hours"] < 13


def test_volumes_prints_the_three_modes_side_by_side_with_their_worst_wait() -> None:
    code, out, err = run("volumes")
    assert code == 0, err
    # The default fleet (4 instances, reached by upload.max_concurrency 24) serves 300,000 a day; 1M needs more (*)
    # and more scheduled hosts (+)
    for volume in ("1,000", "10,000", "100,000", "300,000 ", "1,000,000*+"):
        assert volume in out
    for column in ("real-time $/1k", "async $/1k", "scheduled $/1k", "real-time wait", "scheduled wait"):
        assert column in out
    assert "Real-time vs async" in out
    report = run_json("volumes", "--volumes", "1k", "10k")
    small, large = report["rows"]
    # $ per 1,000 photos falls with volume: the idle floor is spread over more photos
    assert small["real_time_per_1000"] > 9 * large["real_time_per_1000"]
    # Scheduled mode has no idle endpoint: cheapest at 10,000 a day, for hours of latency instead of seconds
    assert large["cheapest"] == "scheduled"
    assert large["scheduled_worst_minutes"] > 60 > large["real_time_worst_minutes"]


def test_sizing_names_the_settings_it_would_change() -> None:
    code, out, err = run("sizing")
    assert code == 0, err
    assert "upload.function_memory_mb" in out
    assert "upload.max_concurrency" in out
    assert "in flight / instance" in out


def test_a_curve_file_is_read_as_json_or_plain_numbers(tmp_path: Path) -> None:
    as_json = tmp_path / "curve.json"
    as_json.write_text(json.dumps([int(w) for w in BUSINESS_HOURS]))
    plain = tmp_path / "curve.txt"
    plain.write_text("\n".join(BUSINESS_HOURS))
    by_json = run_json("traffic", "--per-day", "5000", "--curve-file", str(as_json))
    by_text = run_json("traffic", "--per-day", "5000", "--curve-file", str(plain))
    by_args = run_json("traffic", "--per-day", "5000", "--hourly", *BUSINESS_HOURS)
    assert by_json["upload"][1]["instance_hours"] == by_text["upload"][1]["instance_hours"]
    assert by_json["upload"][1]["instance_hours"] == by_args["upload"][1]["instance_hours"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["traffic", "--per-day", "10k", "--hourly", *(["0"] * 24)], "all zeros"),
        (["traffic", "--per-day", "1M"], "cannot keep up"),
        (["traffic", "--per-day", "10k", "--config", "/nonexistent/cdk.json"], "cannot read"),
    ],
)
def test_bad_inputs_exit_2_with_a_reason(argv: list[str], message: str) -> None:
    code, out, err = run(*argv)
    assert code == 2
    assert out == ""
    assert message in err


def test_a_curve_file_that_is_not_24_numbers_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("1 2 3")
    code, _, err = run("traffic", "--per-day", "10k", "--curve-file", str(short))
    assert code == 2
    assert "expected 24 non-negative numbers, got 3" in err


def test_argument_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["traffic", "--per-day", "lots"], stdout=io.StringIO(), stderr=io.StringIO())
    assert exit_info.value.code == 2


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.cost_estimate", "volumes", "--volumes", "10k"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "10,000" in result.stdout


@pytest.mark.parametrize("page", ["README.md", "docs/cost.md"])
def test_the_three_mode_table_is_what_the_cli_prints(page: str) -> None:
    # The landing page's and the cost page's three-mode table, row by row, against `volumes --json` (figures and
    # worst waits)
    from tools.cost.render import worst_wait

    text = (PROJECT_ROOT / page).read_text()
    section = text[text.index("| photos/day | real-time $/1k | async $/1k | scheduled $/1k |") :]
    rows = {}
    for line in itertools.takewhile(lambda line: line.startswith("|"), section.splitlines()):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].replace(",", "").isdigit():
            rows[int(cells[0].replace(",", ""))] = ([float(c) for c in cells[1:4]], cells[4])
    assert sorted(rows) == [1_000, 10_000, 100_000, 1_000_000]
    report = run_json("volumes", "--volumes", *(str(v) for v in sorted(rows)))
    for row in report["rows"]:
        figures, waits = rows[row["photos_per_day"]]
        modes = ("real_time", "async", "scheduled")
        assert figures == pytest.approx([round(row[f"{m}_per_1000"], 3) for m in modes], abs=0.0006)
        assert waits == " / ".join(worst_wait(row[f"{m}_worst_minutes"]) for m in modes), row["photos_per_day"]


def test_photo_sizes_change_the_time_a_photo_takes_with_token_calibration() -> None:
    # A 16:9 photo is 1,948 image tokens in the stock profile against 2,340 for 4:3: fewer seconds a photo
    tokens = ("--calibration", "tokens")
    wide = run_json("traffic", "--per-day", "10k", "--backfill", "1M", "--size", "1920x1080", *tokens)
    default = run_json("traffic", "--per-day", "10k", "--backfill", "1M", *tokens)
    assert wide["backfill"][0]["duration_hours"] < default["backfill"][0]["duration_hours"]


def test_the_break_even_text_keeps_fleet_steps_apart_from_crossings() -> None:
    from tools.cost.reports import crossing_text
    from tools.cost.system import Crossing

    text = crossing_text([Crossing(552.0), Crossing(128_190.0, step="async", jump_usd=1_028.0)])
    assert "fleets raised to keep up): 552." in text
    assert "Not break-evens: at 128,190 the async fleet steps (+1,028 $ a month)" in text
