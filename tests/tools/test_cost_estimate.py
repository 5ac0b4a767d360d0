"""The cost-estimate CLI: calibration against the seed, token accounting, inputs and errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from classification.contract import Taxonomy
from tools import cost_estimate
from tools.cost_estimate import (
    EstimateError,
    PhotoSize,
    SizeMix,
    estimate,
    gpt4o_image_tokens,
    llava_tokens,
    parse_count,
    parse_size,
)

# Ten plausible extra categories: the seed's prompt had 36 labels, ours has 26.
EXTRA_LABELS = (
    "Meeting Room",
    "Kids Club",
    "Garden",
    "Beach",
    "Golf Course",
    "Casino",
    "Library",
    "Balcony",
    "Kitchen",
    "View",
)


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cost_estimate.main(list(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def run_json(*argv: str) -> dict[str, Any]:
    code, out, err = run_cli(*argv, "--json")
    assert code == 0, err
    return json.loads(out)


def row(result: dict[str, Any], label: str) -> dict[str, Any]:
    matches = [r for r in result["rows"] if r["label"] == label]
    assert len(matches) == 1, [r["label"] for r in result["rows"]]
    return matches[0]


# -- calibration ------------------------------------------------------------------------------------------------


def test_seed_configuration_reproduces_the_seeds_cost_within_ten_percent() -> None:
    # Given the seed's configuration (one ml.g5.xlarge, stock profile, the seed's measured tokens)
    # When the CLI estimates 1,000 photos
    result = run_json("--photos", "1000")
    seed = row(result, "seed: ml.g5.xlarge x1, stock, measured")
    # Then it costs the seed's $0.26 per 1,000 photos (within 10 %) and takes the seed's 674 s
    assert abs(seed["usd_per_1000"] - 0.26) / 0.26 < 0.10
    assert seed["hours"] * 3600 == pytest.approx(674, rel=1e-6)


def test_token_arithmetic_alone_lands_on_the_seeds_cost() -> None:
    # Given the seed's set-up rebuilt from our arithmetic, not from its measured token count:
    # stock profile, a 16:9 photo and a 36-label prompt
    taxonomy = Taxonomy(Taxonomy.load().labels + EXTRA_LABELS)
    sizes = SizeMix((PhotoSize(1920, 1080),), "16:9")
    # When the estimate is made for one ml.g5.xlarge
    result = estimate(
        photos=1000,
        sizes=sizes,
        taxonomy=taxonomy,
        instance_types=[cost_estimate.INSTANCE_TYPES["ml.g5.xlarge"]],
        instance_counts=[1],
        profiles=["stock"],
        max_side=1008,
    )
    # Then the calibration and the token arithmetic agree: the seed's usage block said 2,180 tokens
    ours = result.rows[0]
    assert abs(ours.tokens_per_photo - 2180) / 2180 < 0.05
    assert abs(ours.usd_per_1000 - 0.26) / 0.26 < 0.10


def test_prompt_text_estimate_is_close_to_mistrals_tokenizer() -> None:
    # Given our 26-label prompt, measured at 129 tokens with Mistral's tokenizer.model.v1
    # (benchmarks/bench_cost_text_tokens.py), plus 11 chat-template tokens
    budget = llava_tokens(SizeMix((PhotoSize(4000, 3000),), "4:3"), "stock", Taxonomy.load(), max_side=1008)
    # Then the estimate is within 5 %, and the answer costs the 8-14 tokens the real tokenizer gives
    assert abs(budget.prompt_text - (129 + 11)) <= 0.05 * 140
    assert 8 <= budget.answer <= 14
    assert budget.image == 2340


# -- what a user compares ---------------------------------------------------------------------------------------


def test_compact_profile_halves_the_cost_and_more_instances_only_cut_the_hours() -> None:
    result = run_json("--photos", "20M", "--instances", "1", "10")
    stock_1, stock_10 = row(result, "ml.g5.xlarge x1, stock"), row(result, "ml.g5.xlarge x10, stock")
    compact_1 = row(result, "ml.g5.xlarge x1, compact")
    # Ten instances: a tenth of the hours, the same bill
    assert stock_10["hours"] == pytest.approx(stock_1["hours"] / 10)
    assert stock_10["total_usd"] == pytest.approx(stock_1["total_usd"])
    # Compact: 1,026 instead of 2,340 image tokens for a 4:3 photo, so ~half the cost
    assert compact_1["image_tokens"] == 1026
    assert 0.4 < compact_1["usd_per_1000"] / stock_1["usd_per_1000"] < 0.55
    # The backlog cost is $/1k x N/1000, and the pessimistic figure is the blog's slowest run
    assert stock_1["total_usd"] == pytest.approx(stock_1["usd_per_1000"] * 20_000)
    assert stock_1["hours_pessimistic"] == pytest.approx(stock_1["hours"] * 806 / 674)


def test_gpt4o_rows_use_the_seeds_arithmetic_and_openais_own_image_tokens() -> None:
    result = run_json("--photos", "1000")
    # The seed's 2,180 tokens at $2.50 / M is $5.45 (the seed printed $5.54, two digits swapped)
    assert row(result, "GPT-4o, seed's arithmetic")["usd_per_1000"] == pytest.approx(5.45)
    high, low = row(result, "GPT-4o, detail=high"), row(result, "GPT-4o, detail=low")
    assert low["usd_per_1000"] < high["usd_per_1000"] < 5.45
    assert min(high["usd_per_1000"], low["usd_per_1000"]) > row(result, "ml.g5.xlarge x1, stock")["usd_per_1000"]


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    # OpenAI's worked examples for GPT-4o image inputs
    [(1024, 1024, "high", 765), (2048, 4096, "high", 1105), (4096, 8192, "low", 85), (512, 512, "high", 255)],
)
def test_gpt4o_image_tokens_follow_openais_examples(width: int, height: int, detail: str, tokens: int) -> None:
    assert gpt4o_image_tokens(width, height, detail) == tokens


def test_client_side_resize_to_336_is_counted_on_the_sent_pixels() -> None:
    result = run_json("--photos", "1000", "--max-side", "336", "--profile", "stock")
    assert row(result, "ml.g5.xlarge x1, stock")["image_tokens"] == 1368


def test_size_mix_weights_the_image_tokens() -> None:
    result = run_json("--photos", "1000", "--size", "4000x3000:3", "--size", "1920x1080:1", "--profile", "stock")
    assert row(result, "ml.g5.xlarge x1, stock")["image_tokens"] == pytest.approx((3 * 2340 + 1948) / 4)
    assert result["size_source"] == "4000x3000 (75%) + 1920x1080 (25%)"


def test_price_and_throughput_overrides_scale_the_cost() -> None:
    base = row(run_json("--photos", "1000", "--profile", "stock"), "ml.g5.xlarge x1, stock")
    cheaper = row(
        run_json("--photos", "1000", "--profile", "stock", "--price-per-hour", "0.704"), "ml.g5.xlarge x1, stock"
    )
    faster = row(
        run_json("--photos", "1000", "--profile", "stock", "--tokens-per-second", str(2 * 3234.42136)),
        "ml.g5.xlarge x1, stock",
    )
    assert cheaper["usd_per_1000"] == pytest.approx(base["usd_per_1000"] / 2)
    assert faster["usd_per_1000"] == pytest.approx(base["usd_per_1000"] / 2, rel=1e-4)
    assert faster["speed_basis"] == "--tokens-per-second"


def test_table_names_every_row_and_flags_unmeasured_gpus() -> None:
    code, out, _ = run_cli("--photos", "20M", "--instance-type", "all")
    assert code == 0
    assert "ml.g5.xlarge x1, stock " in out
    assert "ml.g6e.xlarge x1, compact *" in out
    assert "seed: ml.g5.xlarge x1, stock, measured" in out
    assert "* Not measured, speed assumed" in out
    assert "Prefix caching cannot help" in out


# -- inputs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("20000000", 20_000_000),
        ("20,000,000", 20_000_000),
        ("20_000_000", 20_000_000),
        ("20M", 20_000_000),
        ("1.5k", 1500),
        ("3b", 3_000_000_000),
    ],
)
def test_photo_counts_read_the_way_people_write_them(text: str, count: int) -> None:
    assert parse_count(text) == count


@pytest.mark.parametrize("text", ["", "abc", "0", "1.5", "-3", "20 million"])
def test_bad_photo_counts_are_refused(text: str) -> None:
    with pytest.raises(EstimateError, match="photo count"):
        parse_count(text)


def test_sizes_parse_with_and_without_weight() -> None:
    assert parse_size("4000x3000") == PhotoSize(4000, 3000, 1.0)
    assert parse_size("1920X1080:30") == PhotoSize(1920, 1080, 30.0)
    for bad in ("4000*3000", "4000x", "0x10", "10x10:0"):
        with pytest.raises(EstimateError, match="photo size"):
            parse_size(bad)


def _save(path: Path, size: tuple[int, int], *, orientation: int | None = None) -> None:
    image = Image.new("RGB", size, (120, 80, 40))
    if orientation is None:
        image.save(path)
        return
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif)


def test_photo_folder_sizes_are_read_from_headers_with_exif_orientation(tmp_path: Path) -> None:
    # Given a folder with a landscape JPEG, a phone JPEG stored landscape but displayed portrait,
    # a PNG in a sub-folder, a corrupt JPEG and a non-photo file
    _save(tmp_path / "lobby.jpg", (1600, 1200))
    _save(tmp_path / "phone.jpg", (1600, 1200), orientation=6)
    (tmp_path / "sub").mkdir()
    _save(tmp_path / "sub" / "pool.png", (1500, 1000))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("not a photo")
    # When the CLI reads the folder
    code, out, err = run_cli("--photos", "1000", "--photos-dir", str(tmp_path), "--profile", "stock", "--json")
    # Then the three readable photos count with their displayed orientation, the corrupt one is reported
    assert code == 0, err
    result = json.loads(out)
    expected = (2340 + 2352 + 2144) / 3  # 4:3, 3:4 (portrait costs more), 3:2
    assert row(result, "ml.g5.xlarge x1, stock")["image_tokens"] == pytest.approx(expected)
    assert result["unreadable_count"] == 1
    assert "broken.jpg" in result["unreadable_examples"][0]
    assert "found 4 photo files" in err  # progress goes to stderr, the JSON stays parseable


def test_large_photo_folders_are_sampled(tmp_path: Path) -> None:
    for index in range(30):
        _save(tmp_path / f"{index:02d}.png", (40, 30))
    mix = cost_estimate.scan_folder(tmp_path, sample=5)
    assert mix.scanned == 5
    assert len(mix.sizes) == 5
    assert "5 of 30 photos sampled" in mix.source


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--instance-type", "ml.p9.huge"], "unknown instance type ml.p9.huge"),
        (["--instance-type", "ml.g5.xlarge", "ml.g6.xlarge", "--price-per-hour", "1"], "name exactly one"),
        (["--photos-dir", "/nonexistent-folder"], "is not a directory"),
        (["--taxonomy", "/nonexistent.json"], "cannot read taxonomy file"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(argv: list[str], message: str) -> None:
    code, out, err = run_cli("--photos", "1000", *argv)
    assert code == 2
    assert out == ""
    assert message in err


def test_unknown_instance_type_is_usable_with_price_and_throughput() -> None:
    result = run_json(
        "--photos", "1000", "--instance-type", "ml.p5.4xlarge", "--price-per-hour", "6.0",
        "--tokens-per-second", "20000", "--profile", "stock",
    )  # fmt: skip
    custom = row(result, "ml.p5.4xlarge x1, stock")
    assert custom["usd_per_1000"] == pytest.approx(6.0 / (20000 * 3600 / custom["tokens_per_photo"]) * 1000)


def test_an_empty_photo_folder_is_an_error_not_a_zero(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no photos here")
    code, _, err = run_cli("--photos", "1000", "--photos-dir", str(tmp_path))
    assert code == 2
    assert "no readable photo" in err


def test_argument_type_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        cost_estimate.main(["--photos", "lots"], stdout=io.StringIO(), stderr=io.StringIO())
    assert exit_info.value.code == 2
