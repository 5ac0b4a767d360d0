"""The dataset builder: seed-format rows from folders and manifests, every bad row reported, none silently lost."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws
from training_testkit import COLOURS, colour_photo

from classification.contract import Taxonomy
from training_job import build_dataset as builder
from training_job.build_dataset import DatasetBuildError, build_dataset, stratified_split


def _jpeg(label: str, seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    colour_photo(label, np.random.default_rng(seed), size).save(buffer, format="JPEG")
    return buffer.getvalue()


def _labels(split) -> list[str]:
    return [m[1]["content"][0]["text"] for m in split["messages"]]


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Two good labels plus one of every problem the builder must report."""
    root = tmp_path / "photos"
    for label, count in (("Pool", 6), ("room", 4)):  # folder names match labels case-insensitively
        (root / label).mkdir(parents=True)
        for i in range(count):
            colour = "Pool" if label == "Pool" else "Room"
            (root / label / f"{i}.jpg").write_bytes(_jpeg(colour, seed=i + 10 * count))
    (root / "Pool" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    shutil.copy(root / "Pool" / "0.jpg", root / "Pool" / "copy-of-0.jpg")  # duplicate
    shutil.copy(root / "Pool" / "1.jpg", root / "room" / "mislabelled.jpg")  # same photo, other label
    (root / "Spa Area").mkdir()
    (root / "Spa Area" / "x.jpg").write_bytes(_jpeg("Bar", seed=99))  # label not in the taxonomy
    (root / "Pool" / ".DS_Store").write_bytes(b"finder junk")  # hidden: ignored, not reported
    return root


def test_folder_build_reports_every_problem_with_its_row(
    messy_folder: Path, tmp_path: Path, taxonomy: Taxonomy
) -> None:
    # When the messy folder is built
    report = build_dataset(str(messy_folder), tmp_path / "out", taxonomy=taxonomy, progress=False)

    # Then each problem is counted and points at the file that has it
    assert report.rows_read == 14
    assert [p.ref for p in report.unreadable_images] == ["Pool/broken.jpg"]
    assert "unreadable image header" in report.unreadable_images[0].reason  # the reason from images.normalize
    assert [p.ref for p in report.duplicates] == ["Pool/copy-of-0.jpg"]
    assert "Pool/0.jpg" in report.duplicates[0].reason
    # A photo under two labels is dropped everywhere: both rows are listed
    assert sorted(p.ref for p in report.conflicting_labels) == ["Pool/1.jpg", "room/mislabelled.jpg"]
    assert [p.ref for p in report.unknown_labels] == ["Spa Area/x.jpg"]
    assert report.empty_classes == ["Bar", "Lobby"]
    # 5 Pool (6 - the conflicting one) and 4 Room photos remain, split per label
    assert report.usable == 9
    assert report.per_label["Pool"]["train"] + report.per_label["Pool"]["validation"] == 5
    assert report.per_label["Room"]["validation"] >= 1
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["problem_counts"] == {
        "malformed_rows": 0,
        "unknown_labels": 1,
        "unreadable_images": 1,
        "duplicates": 1,
        "conflicting_labels": 2,
        "empty_classes": 2,
    }


def test_rows_are_the_seed_format_with_production_normalised_images(tmp_path: Path, taxonomy: Taxonomy) -> None:
    # Given a large 4:3 photo in a label folder whose name spells the label differently
    from datasets import load_from_disk

    wide_taxonomy = Taxonomy(("Staircase/Elevator", "Pool"))
    folder = tmp_path / "photos" / "staircase_elevator"
    folder.mkdir(parents=True)
    colour_photo("Pool", np.random.default_rng(1), (2000, 1500)).save(folder / "big.png")
    colour_photo("Pool", np.random.default_rng(2), (2000, 1500)).save(folder / "big2.png")

    # When the dataset is built
    build_dataset(str(tmp_path / "photos"), tmp_path / "out", taxonomy=wide_taxonomy, progress=False)
    dataset = load_from_disk(str(tmp_path / "out"))

    # Then rows hold exactly `images` + `messages`, the messages come from the contract, and the image is the
    # JPEG production sends (long side 1,008 px)
    row = dataset["train"][0]
    assert set(dataset["train"].column_names) == {"images", "messages"}
    expected = wide_taxonomy.training_messages("Staircase/Elevator")
    assert row["messages"][0]["content"][0]["text"] == expected[0]["content"][0]["text"]
    assert row["messages"][0]["content"][1]["type"] == "image"
    answer = expected[1]["content"][0]["text"]
    assert row["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": answer}]}
    assert row["images"][0].format == "JPEG"
    assert row["images"][0].size == (1008, 756)
    assert json.loads((tmp_path / "out" / "taxonomy.json").read_text())["labels"] == list(wide_taxonomy.labels)


def test_csv_manifest_resolves_relative_paths_and_reports_bad_rows(
    photo_folder: Path, tmp_path: Path, taxonomy: Taxonomy
) -> None:
    # Given a CSV with relative and absolute paths, a missing file, an empty label and an empty image cell
    manifest = tmp_path / "manifest.csv"
    (tmp_path / "a.jpg").write_bytes((photo_folder / "Bar" / "000.jpg").read_bytes())
    manifest.write_text(
        "image,label\n"
        "a.jpg,Bar\n"
        f"{photo_folder / 'Pool' / '000.jpg'},pool\n"
        "missing.jpg,Bar\n"
        f"{photo_folder / 'Room' / '000.jpg'},\n"
        ",Bar\n",
        encoding="utf-8",
    )

    # When it is built
    report = build_dataset(str(manifest), tmp_path / "out", taxonomy=taxonomy, progress=False)

    # Then refs are spreadsheet line numbers, and only the two good rows are kept
    assert report.usable == 2
    assert [p.ref for p in report.unreadable_images] == [f"{manifest}:4"]
    assert [p.ref for p in report.unknown_labels] == [f"{manifest}:5"]
    assert [p.ref for p in report.malformed_rows] == [f"{manifest}:6"]


def test_csv_without_the_required_header_is_a_clear_error(tmp_path: Path, taxonomy: Taxonomy) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,category\na.jpg,Bar\n", encoding="utf-8")
    with pytest.raises(DatasetBuildError, match="must name the columns image and label"):
        build_dataset(str(manifest), tmp_path / "out", taxonomy=taxonomy, progress=False)


@mock_aws
def test_jsonl_manifest_on_s3_reads_images_from_s3(tmp_path: Path, taxonomy: Taxonomy) -> None:
    # Given photos and a JSON-lines manifest in S3 (one key relative to the manifest, one absolute URI)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="photos")
    for i, label in enumerate(COLOURS):
        s3.put_object(Bucket="photos", Key=f"set/{label}.jpg", Body=_jpeg(label, seed=i))
    lines = [json.dumps({"image": f"{label}.jpg", "label": label}) for label in ("Pool", "Room")]
    lines += [json.dumps({"image": "s3://photos/set/Bar.jpg", "label": "Bar"}), "{not json", ""]
    lines += [json.dumps({"image": "s3://photos/set/absent.jpg", "label": "Bar"})]
    s3.put_object(Bucket="photos", Key="set/manifest.jsonl", Body="\n".join(lines).encode())
    builder._s3_client = None  # a client made outside the mock would talk to real AWS

    # When the manifest URI is built
    report = build_dataset("s3://photos/set/manifest.jsonl", tmp_path / "out", taxonomy=taxonomy, progress=False)
    builder._s3_client = None

    # Then the S3 photos are read, the bad JSON line and the missing object are reported
    assert report.usable == 3
    assert [p.ref for p in report.malformed_rows] == ["s3://photos/set/manifest.jsonl:4"]
    assert [p.ref for p in report.unreadable_images] == ["s3://photos/set/manifest.jsonl:6"]
    assert "NoSuchKey" in report.unreadable_images[0].reason


def test_split_is_stratified_seeded_and_keeps_every_label_in_training() -> None:
    # Given 20 Pool, 10 Room, 2 Bar and 1 Lobby rows
    labels = ["Pool"] * 20 + ["Room"] * 10 + ["Bar"] * 2 + ["Lobby"]

    # When split twice with the same seed and once with another
    train, validation = stratified_split(labels, validation_fraction=0.2, seed=7)
    again = stratified_split(labels, validation_fraction=0.2, seed=7)
    other = stratified_split(labels, validation_fraction=0.2, seed=8)

    # Then each label keeps its share, rare labels still train, and the seed decides membership
    assert Counter(labels[i] for i in validation) == {"Pool": 4, "Room": 2, "Bar": 1}
    assert Counter(labels[i] for i in train) == {"Pool": 16, "Room": 8, "Bar": 1, "Lobby": 1}
    assert sorted(train + validation) == list(range(len(labels)))
    assert (train, validation) == again
    assert validation != other[1]


def test_nothing_usable_fails_with_the_counts(tmp_path: Path, taxonomy: Taxonomy) -> None:
    # Given a folder whose only photos are corrupt or unlabelled
    (tmp_path / "photos" / "Pool").mkdir(parents=True)
    (tmp_path / "photos" / "Pool" / "a.jpg").write_bytes(b"garbage")
    (tmp_path / "photos" / "Gym").mkdir()
    (tmp_path / "photos" / "Gym" / "b.jpg").write_bytes(_jpeg("Bar", seed=3))

    # When the CLI builds it
    code = builder.main([str(tmp_path / "photos"), str(tmp_path / "out"), "--no-progress"])

    # Then it exits 1 instead of writing an empty dataset
    assert code == 1
    expected = r"no usable photo among 2 rows .*unknown_labels 1, unreadable_images 1"
    with pytest.raises(DatasetBuildError, match=expected):
        build_dataset(str(tmp_path / "photos"), tmp_path / "out", taxonomy=taxonomy, progress=False)


def test_cli_builds_and_prints_a_summary(
    photo_folder: Path, tmp_path: Path, taxonomy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(photo_folder), str(tmp_path / "out"), "--taxonomy", str(taxonomy_file), "--no-progress"]
    code = builder.main([*args, "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "96 usable of 96 rows: 88 train, 8 validation" in out
    assert (tmp_path / "out" / "dataset_dict.json").is_file()


@pytest.mark.parametrize("fraction", ["0", "1", "-0.1"])
def test_cli_refuses_a_split_that_leaves_nothing_to_evaluate_or_train(
    photo_folder: Path, tmp_path: Path, taxonomy_file: Path, fraction: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a fraction that would leave the validation (accuracy gate) or training split empty
    args = [str(photo_folder), str(tmp_path / "out"), "--taxonomy", str(taxonomy_file), "--no-progress"]
    # When the CLI runs
    code = builder.main([*args, "--validation-fraction", fraction])
    # Then it refuses with the reason and writes no dataset
    assert code == 1
    assert "validation_fraction must be in (0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "dataset_dict.json").exists()


def test_cli_help_describes_the_sources(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        builder.main(["--help"])
    assert exit_info.value.code == 0
    assert "manifest.jsonl" in capsys.readouterr().out
