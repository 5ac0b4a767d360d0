"""A scheduled window's Lambda steps (window_core.py, window_handler.py) on moto: survey, plan, report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from labeller_inputs import parse_manifest
from labeller_testkit import BUCKET, TABLE, Aws, FakeContext
from window_aws import STATUS_INDEX, DynamoPendingIndex, S3WorkStore
from window_core import Window, WindowSettings
from window_files import JobSummary

from stacks.storage import labels_table

WORK = "photo-labeler-work"
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
SETTINGS = WindowSettings(
    max_photos=1000, photos_per_shard=3, max_hosts=4, photos_per_hour_per_host=60, target_job_minutes=5
)


@pytest.fixture
def work(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    aws.s3.create_bucket(Bucket=WORK)
    monkeypatch.setenv("WORK_BUCKET", WORK)
    import window_handler

    window_handler.get_window.cache_clear()
    return aws


def pend(aws: Aws, key: str, minute: int, *, status: str = "PENDING", hotel: str | None = "h1") -> None:
    item: dict[str, Any] = {
        "image_uri": {"S": f"s3://{BUCKET}/{key}"},
        "status": {"S": status},
        "etag": {"S": f"etag-{key}"},
        "classified_at": {"S": f"2026-11-25T{10 + minute // 60:02d}:{minute % 60:02d}:00.000+00:00"},
    }
    if hotel:
        item["hotel_id"] = {"S": hotel}
    aws.dynamodb.put_item(TableName=TABLE, Item=item)


def window(aws: Aws, page_size: int = 1000) -> Window:
    return Window(
        index=DynamoPendingIndex(aws.dynamodb, TABLE, page_size=page_size),
        store=S3WorkStore(aws.s3, WORK),
        clock=lambda: NOW,
    )


def shard_texts(aws: Aws, window_id: str) -> dict[str, str]:
    listed = aws.s3.list_objects_v2(Bucket=WORK, Prefix=f"windows/{window_id}/manifest/").get("Contents", [])
    return {
        entry["Key"].rsplit("/", 1)[1]: aws.s3.get_object(Bucket=WORK, Key=entry["Key"])["Body"].read().decode()
        for entry in listed
    }


def test_the_status_index_name_is_the_tables() -> None:
    assert labels_table.BY_STATUS.name == STATUS_INDEX


def test_survey_counts_up_to_its_limit_and_ages_the_oldest_photo(work: Aws) -> None:
    # Given five waiting photos (the oldest since 10:00) and a labelled one
    for minute in (30, 0, 45, 10, 20):
        pend(work, f"uploads/h1/{minute}.jpg", minute)
    pend(work, "uploads/h1/done.jpg", 0, status="LABELED")
    # When a window surveys, reading pages of two
    survey = window(work, page_size=2).survey(limit=3)
    # Then it stops counting at its limit and knows the oldest waited two hours
    assert (survey.pending, survey.oldest_age_seconds) == (3, 7200)
    assert window(work).survey(limit=100).pending == 5
    empty = Window(index=DynamoPendingIndex(work.dynamodb, "other"), store=S3WorkStore(work.s3, WORK))
    with pytest.raises(Exception, match="ResourceNotFound"):
        empty.survey(limit=1)


def test_plan_writes_the_oldest_photos_into_even_shards_and_sizes_the_job(work: Aws) -> None:
    # Given eleven waiting photos (one without a hotel)
    for minute in range(11):
        pend(
            work,
            f"uploads/h{minute % 2}/{minute:02d}.jpg",
            minute,
            hotel=None if minute == 4 else f"h{minute % 2}",
        )
    # When a window takes at most ten of them
    plan = window(work, page_size=4).plan(
        "20261125-120000", WindowSettings(**{**SETTINGS.__dict__, "max_photos": 10})
    )
    # Then the ten oldest are in the manifest, in shards of at most three, one host per five photos (60/h x 5 min)
    assert (plan.photos, plan.hosts, plan.shards) == (10, 2, 4)
    texts = shard_texts(work, "20261125-120000")
    assert sorted(texts) == [f"shard-0000{i}.jsonl" for i in range(4)]
    refs = [ref for name in sorted(texts) for ref in parse_manifest(texts[name], name)[0]]
    assert [ref.key for ref in refs] == [f"uploads/h{m % 2}/{m:02d}.jpg" for m in range(10)]
    assert [len(parse_manifest(texts[name], name)[0]) for name in sorted(texts)] == [2, 3, 2, 3]
    assert refs[0].etag == "etag-uploads/h0/00.jpg" and refs[4].hotel_id is None and refs[5].hotel_id == "h1"
    assert (plan.manifest_prefix, plan.checkpoint_prefix) == (
        "windows/20261125-120000/manifest/",
        "windows/20261125-120000/checkpoints/",
    )


def test_every_host_gets_a_shard_and_hosts_never_exceed_the_maximum(work: Aws) -> None:
    assert [SETTINGS.hosts_for(n) for n in (1, 5, 6, 20, 21, 500)] == [1, 1, 2, 4, 4, 4]
    for minute in range(4):
        pend(work, f"uploads/h1/{minute}.jpg", minute)
    settings = WindowSettings(**{**SETTINGS.__dict__, "photos_per_shard": 100, "photos_per_hour_per_host": 12})
    plan = window(work).plan("w1", settings)
    assert (plan.hosts, plan.shards) == (4, 4)  # one photo per host: each host's ShardedByS3Key share is a shard


def test_an_empty_window_writes_nothing(work: Aws) -> None:
    plan = window(work).plan("w2", SETTINGS)
    assert (plan.photos, plan.hosts, plan.shards) == (0, 0, 0)
    assert shard_texts(work, "w2") == {}


def test_report_sums_the_hosts_summaries_and_ignores_half_written_ones(work: Aws) -> None:
    prefix = "windows/w3/checkpoints/"
    work.s3.put_object(
        Bucket=WORK, Key=prefix + "summary-algo-1.json", Body=JobSummary("algo-1", labeled=3).to_json()
    )
    work.s3.put_object(
        Bucket=WORK, Key=prefix + "summary-algo-2.json", Body=JobSummary("algo-2", labeled=2, failed=1).to_json()
    )
    work.s3.put_object(Bucket=WORK, Key=prefix + "summary-algo-3.json.partial", Body=b"{")
    work.s3.put_object(Bucket=WORK, Key=prefix + "done/algo-1-000000.json", Body=b"[]")
    counts = window(work).report("w3")
    assert (counts["labeled"], counts["failed"], counts["hosts"]) == (5, 1, 2)


def test_the_handler_runs_each_step_and_refuses_a_malformed_event(
    work: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    import window_handler

    pend(work, "uploads/h1/a.jpg", 0)
    survey = window_handler.lambda_handler({"action": "survey", "limit": 10}, FakeContext())
    assert survey["pending"] == 1 and survey["oldest_age_seconds"] > 0
    assert '"OldestPendingSeconds"' in capsys.readouterr().out
    settings = {**SETTINGS.__dict__}
    plan = window_handler.lambda_handler(
        {"action": "plan", "window_id": "w4", "settings": settings}, FakeContext()
    )
    assert plan["photos"] == 1 and plan["shards"] == 1
    report = window_handler.lambda_handler({"action": "report", "window_id": "w4"}, FakeContext())
    assert report["hosts"] == 0
    for event, message in (
        ({"action": "label"}, "survey, plan or report"),
        ({"action": "survey", "limit": 0}, "'limit' must be an integer >= 1"),
        ({"action": "plan", "window_id": "a/b", "settings": settings}, "without '/'"),
        ({"action": "plan", "window_id": "w5", "settings": {**settings, "max_hosts": "4"}}, "settings.max_hosts"),
    ):
        with pytest.raises(ValueError, match=message):
            window_handler.lambda_handler(event, FakeContext())


def test_the_handler_names_its_missing_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import window_handler

    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.delenv("WORK_BUCKET", raising=False)
    window_handler.get_window.cache_clear()
    with pytest.raises(ValueError, match=r"not set: WORK_BUCKET$"):
        window_handler.get_window()
