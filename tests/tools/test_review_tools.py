"""The loop closes: decisions made through the review API -> tools.review_export -> training_job.build_dataset,
and tools.review_report's agreement, calibration and threshold arithmetic. All on moto, in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from classification.contract import Taxonomy
from review_api.aws import DynamoLabelTable, S3PhotoStore
from review_api.core import ReviewConfig, ReviewService
from review_api.identity import Reviewer
from review_api.inputs import ListQuery
from tests.review_api.review_testkit import BUCKET, HISTORY_TABLE, REGION, TABLE, create_tables, jpeg, seed_photo
from tools import review_export, review_report
from training_job import build_dataset as builder

REVIEWER = Reviewer(sub="7d1c-ana", name="ana@example.com")
LEAD = Reviewer(sub="c3f0-lea", name="lea@example.com", groups=frozenset({"reviewers", "leads"}))


@pytest.fixture
def account(aws_env: None) -> Iterator[tuple[Any, Any, ReviewService]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_tables(dynamodb)
        service = ReviewService(
            ReviewConfig(bucket=BUCKET, labels=Taxonomy.load().labels),
            table=DynamoLabelTable(dynamodb, TABLE, HISTORY_TABLE),
            photos=S3PhotoStore(s3),
        )
        builder._s3_client = None  # a client made outside the mock would talk to real AWS
        yield s3, dynamodb, service
        builder._s3_client = None


def _decide_all(service: ReviewService, answers: dict[str, dict[str, Any]]) -> None:
    for photo in service.list(ListQuery(limit=100))["photos"]:
        name = photo["image_uri"].rsplit("/", 1)[1]
        if name in answers:
            service.decide(photo["id"], {**answers[name], "token": photo["token"]}, REVIEWER)


def test_reviewed_decisions_reach_the_next_dataset_with_the_reviewers_labels(
    account: tuple[Any, Any, ReviewService], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, dynamodb, service = account
    # Given three uncertain photos the model called Room, reviewed: a confirmed, b corrected to Pool, c rejected
    colours = {"a": (200, 40, 40), "b": (40, 200, 40), "c": (40, 40, 200)}
    for minute, (name, colour) in enumerate(colours.items()):
        seed_photo(
            s3,
            dynamodb,
            f"uploads/h1/{name}.jpg",
            label="Room",
            color=colour,
            classified_at=f"2026-11-30T09:0{minute}:00.000+00:00",
        )
    _decide_all(
        service,
        {
            "a.jpg": {"decision": "confirm"},
            "b.jpg": {"decision": "correct", "label": "Pool"},
            "c.jpg": {"decision": "reject"},
        },
    )
    # and b replaced in the bucket after it was reviewed (the manifest must name the version the reviewer saw)
    s3.put_object(Bucket=BUCKET, Key="uploads/h1/b.jpg", Body=jpeg((250, 250, 0)))

    # When the decisions are exported
    manifest = tmp_path / "reviewed.jsonl"
    assert review_export.main(["--table", TABLE, "--output", str(manifest), "--region", REGION]) == 0
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]

    # Then the manifest holds every decided photo with the reviewers' labels and versions, the rejected one with
    # no label, and what the model had decided before
    assert {(r["image"].rsplit("/", 1)[1], r["label"], r["decision"]) for r in rows} == {
        ("a.jpg", "Room", "confirm"),
        ("b.jpg", "Pool", "correct"),
        ("c.jpg", None, "reject"),
    }
    assert all(
        r["version_id"] and r["model_label"] == "Room" and r["reviewed_by"] == "ana@example.com" for r in rows
    )
    assert {r["status_before_review"] for r in rows} == {"NEEDS_REVIEW"}
    assert "1 corrected, 1 confirmed, 1 rejected" in capsys.readouterr().out

    # When the next dataset is built from the old folder, where b's photo still sits under Bar, plus the decisions
    photos = tmp_path / "photos"
    for label, name, data in [
        ("Bar", "b.jpg", jpeg(colours["b"])),
        ("Lobby", "x.jpg", jpeg((10, 10, 10))),
        ("Lobby", "y.jpg", jpeg((90, 90, 90))),
    ]:
        (photos / label).mkdir(parents=True, exist_ok=True)
        (photos / label / name).write_bytes(data)
    report = builder.build_dataset(
        str(photos), tmp_path / "data", taxonomy=Taxonomy.load(), progress=False, reviewed=str(manifest)
    )

    # Then b is trained as Pool (the reviewer's label, the version they saw), the folder's Bar row is superseded,
    # and the rejected photo is absent
    assert report.reviewed_rows == 2 and report.reviewed_rejected == 1 and report.usable == 4
    assert report.unknown_labels == []
    assert [p.ref for p in report.superseded_by_review] == ["Bar/b.jpg"]
    assert report.conflicting_labels == []
    counts = {label: n["train"] + n["validation"] for label, n in report.per_label.items() if any(n.values())}
    assert counts == {"Room": 1, "Pool": 1, "Lobby": 2}

    # And the export used as the dataset's only source (the day-one path) leaves the rejected photo out too,
    # instead of reporting its empty label as unknown
    alone = builder.build_dataset(str(manifest), tmp_path / "data-alone", taxonomy=Taxonomy.load(), progress=False)
    assert alone.reviewed_rejected == 1 and alone.unknown_labels == [] and alone.usable == 2


def test_export_refuses_a_wrong_output_name_and_reports_an_unreadable_table(
    account: tuple[Any, Any, ReviewService], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        review_export.main(["--table", TABLE, "--output", str(tmp_path / "x.csv")])
    assert review_export.main(["--table", "no-such-table", "--output", str(tmp_path / "x.jsonl")]) == 1
    assert "cannot read table no-such-table" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "x.jsonl.partial").exists()


def _item(label: str, confidence: float, decision: str, human: str | None = None, before: str = "NEEDS_REVIEW"):
    return {
        "label": label,
        "confidence": confidence,
        "review_decision": decision,
        "human_label": human if human is not None else (label if decision == "confirm" else None),
        "status_before_review": before,
    }


def test_report_measures_agreement_per_label_and_bucket_and_finds_the_threshold() -> None:
    # Given reviews where high confidence is right and low confidence often wrong
    items = (
        [_item("Pool", 0.95, "confirm", before="LABELED")] * 9
        + [_item("Pool", 0.92, "correct", "Spa", before="LABELED")]
        + [_item("Room", 0.75, "confirm")] * 8
        + [_item("Room", 0.72, "correct", "Lobby")] * 2
        + [_item("Room", 0.35, "confirm")] * 2
        + [_item("Bar", 0.31, "reject")] * 3
        + [{"label": "Bar", "confidence": 0.5, "status": "LABELED"}]  # not reviewed: ignored
    )
    data = review_report.report(items, target_accuracy=0.85)

    # Then agreement per label and per bucket is counted (a rejection is a disagreement)
    assert data["reviewed"] == 25
    labels = {
        row["name"]: (row["reviewed"], row["agreed"], row["corrected"], row["rejected"])
        for row in data["per_label"]
    }
    assert labels == {"Pool": (10, 9, 1, 0), "Room": (12, 10, 2, 0), "Bar": (3, 0, 0, 3)}
    buckets = {row["name"]: (row["reviewed"], row["agreement"]) for row in data["per_confidence_bucket"]}
    assert buckets == {"0.3-0.4": (5, 0.4), "0.7-0.8": (10, 0.8), "0.9-1.0": (10, 0.9)}
    # and the threshold is the lowest confidence whose photos at or above it agree >= the target: for 85 %
    # 0.35 (19 of 22 agree); 0.31 would take in the three rejections (19 of 25)
    threshold = data["threshold"]
    assert threshold["threshold"] == 0.35 and threshold["samples"] == 22
    assert threshold["accuracy"] == pytest.approx(19 / 22) and threshold["coverage"] == pytest.approx(22 / 25)
    # for 90 % it is 0.75 (17 of 18): 0.72 adds two corrections (17 of 20)
    assert review_report.report(items, target_accuracy=0.9)["threshold"]["threshold"] == 0.75
    assert (data["from_needs_review"], data["from_labeled"]) == (15, 10)
    # a target nothing reaches has no threshold
    assert (
        review_report.report([_item("Bar", 0.9, "reject")], target_accuracy=0.5)["threshold"]["threshold"] is None
    )
    text = review_report.format_report(data)
    assert "Threshold for 85.0% accuracy: confidence >= 0.350" in text and "(few)" in text


def test_report_reads_the_table_and_an_export_manifest_alike(
    account: tuple[Any, Any, ReviewService], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, dynamodb, service = account
    for minute, name in enumerate("abc"):
        seed_photo(
            s3,
            dynamodb,
            f"uploads/h1/{name}.jpg",
            label="Room",
            confidence=0.5 + minute / 10,
            classified_at=f"2026-11-30T09:0{minute}:00.000+00:00",
        )
    _decide_all(
        service,
        {
            "a.jpg": {"decision": "confirm"},
            "b.jpg": {"decision": "correct", "label": "Pool"},
            "c.jpg": {"decision": "reject"},
        },
    )
    assert review_report.main(["--table", TABLE, "--region", REGION, "--json"]) == 0
    from_table = json.loads(capsys.readouterr().out)
    manifest = tmp_path / "all.jsonl"
    review_export.main(["--table", TABLE, "--output", str(manifest), "--region", REGION])
    capsys.readouterr()
    assert review_report.main(["--manifest", str(manifest), "--json"]) == 0
    from_manifest = json.loads(capsys.readouterr().out)
    # The export keeps the rejected photo, so its agreement is the table's (1 of 3), not 1 of 2
    assert from_table["per_label"] == from_manifest["per_label"]
    assert from_table["agreement"] == from_manifest["agreement"]
    assert (from_manifest["agreement"]["agreed"], from_manifest["agreement"]["reviewed"]) == (1, 3)
    assert from_manifest["from_needs_review"] == 3


def test_the_export_and_report_show_the_history_of_overrides_and_undos(
    account: tuple[Any, Any, ReviewService], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, dynamodb, service = account
    seed_photo(s3, dynamodb, "uploads/h1/a.jpg", label="Room", classified_at="2026-11-30T09:00:00.000+00:00")
    seed_photo(s3, dynamodb, "uploads/h1/b.jpg", label="Room", classified_at="2026-11-30T09:01:00.000+00:00")
    # ana confirms a and b; a lead overrides a to Spa; ana changes her mind on b and undoes it
    _decide_all(service, {"a.jpg": {"decision": "confirm"}, "b.jpg": {"decision": "confirm"}})
    reviewed = {p["image_uri"].rsplit("/", 1)[1]: p for p in service.list(ListQuery(status="REVIEWED"))["photos"]}
    service.decide(
        reviewed["a.jpg"]["id"],
        {"decision": "correct", "label": "Spa", "override": True, "token": reviewed["a.jpg"]["token"]},
        LEAD,
    )
    changed = service.decide(
        reviewed["b.jpg"]["id"],
        {"decision": "correct", "label": "Bar", "token": reviewed["b.jpg"]["token"]},
        REVIEWER,
    )
    service.undo(changed["id"], {"token": changed["token"]}, REVIEWER)

    manifest = tmp_path / "reviewed.jsonl"
    args = ["--table", TABLE, "--history-table", HISTORY_TABLE, "--region", REGION]
    assert review_export.main([*args, "--output", str(manifest)]) == 0
    rows = {
        json.loads(line)["image"].rsplit("/", 1)[1]: json.loads(line) for line in manifest.read_text().splitlines()
    }
    # The latest decision per photo, with its history
    assert (rows["a.jpg"]["label"], rows["a.jpg"]["reviewed_by"]) == ("Spa", "lea@example.com")
    assert [(e["action"], e["by"]) for e in rows["a.jpg"]["history"]] == [
        ("decide", "ana@example.com"),
        ("override", "lea@example.com"),
    ]
    assert rows["b.jpg"]["label"] == "Room" and [e["action"] for e in rows["b.jpg"]["history"]] == [
        "decide",
        "decide",
        "undo",
    ]
    capsys.readouterr()
    # and the report counts what happened, from the table or from the manifest
    assert review_report.main([*args]) == 0
    text = capsys.readouterr().out
    assert (
        "History: 3 decisions, 1 overrides by leads (1 changed the label or verdict), 1 undos, on 2 photos."
        in text
    )
    assert review_report.main(["--manifest", str(manifest), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["history"]["overrides_that_disagreed"] == 1
