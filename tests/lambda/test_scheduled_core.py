"""endpoint.mode scheduled, the Lambda side (lambda/scheduled_core.py) on moto: PENDING records and their rules."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import handler
import pytest
from handler_testkit import CountingObjects, emitted_metrics, log_lines, make_queue, receive, run_batch
from labeller_aws import DynamoLabelStore, S3ObjectStore
from labeller_core import LabellerConfig, Outcome, Prepared, Status, encode_request
from labeller_inputs import ObjectRef
from labeller_testkit import BUCKET, MODEL_ID, TABLE, Aws, FakeContext, labeller_config, photo, vllm_answer
from scheduled_core import PENDING_REASON, PendingRecorder, WindowLabeller

from classification.images import InvalidImage, normalize


@pytest.fixture
def scheduled(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """The moto account with the labeller's environment switched to endpoint.mode scheduled (no endpoint)."""
    monkeypatch.setenv("ENDPOINT_MODE", "scheduled")
    monkeypatch.delenv("ENDPOINT_NAME")
    handler.get_labeller.cache_clear()
    aws.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return aws


def recorder(aws: Aws, *, validate: bool = True, config: LabellerConfig | None = None) -> PendingRecorder:
    return PendingRecorder(
        config or labeller_config(os.environ),
        objects=CountingObjects(aws.s3),
        labels=DynamoLabelStore(aws.dynamodb, TABLE),
        validate=validate,
    )


def window_labeller(aws: Aws) -> WindowLabeller:
    config = labeller_config({**os.environ, "UPLOAD_PREFIX": ""})
    return WindowLabeller(config, objects=S3ObjectStore(aws.s3), labels=DynamoLabelStore(aws.dynamodb, TABLE))


def upload(aws: Aws, key: str, body: bytes) -> ObjectRef:
    etag = aws.s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
    return ObjectRef(BUCKET, key, etag)


def pending_uris(aws: Aws) -> list[str]:
    """What a window's planner finds: the by-status index's PENDING partition."""
    response = aws.dynamodb.query(
        TableName=TABLE,
        IndexName="by-status",
        KeyConditionExpression="#s = :p",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":p": {"S": "PENDING"}},
    )
    return [item["image_uri"]["S"] for item in response["Items"]]


def test_an_upload_is_validated_then_recorded_pending_and_findable_by_status(
    scheduled: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an uploaded photo and an upload notification for it
    queue, _ = make_queue(scheduled)
    scheduled.s3.put_object(Bucket=BUCKET, Key="uploads/h1/pool.jpg", Body=photo((0, 0, 240), (800, 600)))

    # When the upload handler runs in scheduled mode
    assert run_batch(receive(scheduled, queue)) == set()

    # Then the photo version waits as PENDING, read and normalised but labelled by nobody yet
    item = scheduled.item("uploads/h1/pool.jpg")
    assert item is not None
    assert (item["status"], item["reason"], item["model"], item["hotel_id"]) == (
        "PENDING",
        PENDING_REASON,
        MODEL_ID,
        "h1",
    )
    head = scheduled.s3.head_object(Bucket=BUCKET, Key="uploads/h1/pool.jpg")
    assert (item["etag"], item["version_id"]) == (head["ETag"].strip('"'), head["VersionId"])
    assert "label" not in item and "confidence" not in item
    assert pending_uris(scheduled) == [f"s3://{BUCKET}/uploads/h1/pool.jpg"]
    # and the metric says it was recorded for a window, not submitted to an endpoint
    metrics = emitted_metrics(log_lines(capsys.readouterr().out))
    assert metrics["PhotosPending"] == 1 and metrics["PhotosSubmitted"] == 0


def test_a_bad_file_is_rejected_at_once_with_the_realtime_reason(scheduled: Aws) -> None:
    # Given a truncated JPEG
    good = photo((10, 200, 10), (640, 480))
    ref = upload(scheduled, "uploads/h2/broken.jpg", good[: len(good) // 3])

    # When the scheduled labeller sees it
    outcome = recorder(scheduled).process(ref)

    # Then it is REJECTED now, with the normaliser's reason that the real-time path stores; nothing waits
    with pytest.raises(InvalidImage) as realtime:
        normalize(good[: len(good) // 3])
    assert (outcome.status, outcome.reason) == (Status.REJECTED, realtime.value.reason)
    assert scheduled.item("uploads/h2/broken.jpg")["reason"] == realtime.value.reason  # type: ignore[index]
    assert pending_uris(scheduled) == []


def test_prepare_builds_the_request_every_path_sends_and_record_writes_the_answer(scheduled: Aws) -> None:
    # Given a PENDING photo, as the upload handler leaves it
    body = photo((240, 120, 0), (1024, 768))
    ref = upload(scheduled, "uploads/h3/bar.jpg", body)
    assert recorder(scheduled).process(ref).status is Status.PENDING

    # When the window's labeller prepares it
    labeller = window_labeller(scheduled)
    prepared = labeller.prepare(replace(ref, hotel_id="h3"))  # the manifest names the PENDING item's hotel

    # Then the request is the real-time endpoint's body for the normalised photo
    assert isinstance(prepared, Prepared)
    assert prepared.request == encode_request(labeller.config.taxonomy, normalize(body).jpeg)
    # and recording the model's answer replaces the PENDING item with the label
    outcome = labeller.record(prepared, vllm_answer("Bar", logprob=-0.01))
    item = scheduled.item("uploads/h3/bar.jpg")
    assert (outcome.status, item["status"], item["label"]) == (Status.LABELED, "LABELED", "Bar")  # type: ignore[index]
    assert item["hotel_id"] == "h3" and "reason" not in item  # type: ignore[operator,index]
    assert pending_uris(scheduled) == []


def test_a_duplicate_notification_changes_nothing_not_even_the_waiting_time(scheduled: Aws) -> None:
    # Given a PENDING photo
    ref = upload(scheduled, "uploads/h4/lobby.jpg", photo((0, 240, 0)))
    assert recorder(scheduled).process(ref).status is Status.PENDING
    since = scheduled.item("uploads/h4/lobby.jpg")["classified_at"]  # type: ignore[index]

    # When the same notification is delivered again
    again = recorder(scheduled)
    outcome = again.process(ref)

    # Then it is skipped before any download, and the photo keeps its place in the queue
    assert (outcome.status, outcome.reason) == (
        Status.SKIPPED,
        "this version already waits for a labelling window",
    )
    assert again._objects.downloads == 0  # type: ignore[attr-defined]
    assert scheduled.item("uploads/h4/lobby.jpg")["classified_at"] == since  # type: ignore[index]


def test_an_older_version_never_replaces_a_newer_one_and_a_newer_one_replaces_an_older_label(
    scheduled: Aws,
) -> None:
    store = DynamoLabelStore(scheduled.dynamodb, TABLE)
    base: dict[str, Any] = {"image_uri": f"s3://{BUCKET}/uploads/h5/a.jpg", "model": MODEL_ID}
    newer = {**base, "status": "PENDING", "etag": "e2", "source_last_modified": "2026-11-25T12:00:02.000000Z"}
    older = {**base, "status": "PENDING", "etag": "e1", "source_last_modified": "2026-11-25T12:00:01.000000Z"}
    labelled_older = {**older, "status": "LABELED", "label": "Pool"}

    # Given the older version's label
    assert store.put_result(labelled_older, final_statuses=("LABELED", "NEEDS_REVIEW", "REJECTED"))
    # When the newer version is recorded PENDING, then the older one again (a late notification)
    assert store.put_pending(newer) is True
    assert store.put_pending(older) is False
    # Then the newer version waits; the same version's PENDING is not written twice either
    assert store.put_pending(newer) is False
    assert scheduled.item("uploads/h5/a.jpg")["etag"] == "e2"  # type: ignore[index]


def test_a_final_result_is_replaced_only_when_reclassifying_for_another_model(scheduled: Aws) -> None:
    store = DynamoLabelStore(scheduled.dynamodb, TABLE)
    version = {"image_uri": f"s3://{BUCKET}/uploads/h6/a.jpg", "etag": "e1"}
    version["source_last_modified"] = "2026-11-25T12:00:01.000000Z"
    assert store.put_result(
        {**version, "status": "LABELED", "label": "Pool", "model": "model-a"}, final_statuses=("LABELED",)
    )
    pending = {**version, "status": "PENDING", "model": "model-b"}
    # The same version's result stays without reclassify, and with it for the model that produced it
    assert store.put_pending(pending) is False
    assert store.put_pending({**pending, "model": "model-a"}, replace_statuses=("LABELED",)) is False
    # Reclassifying for another model queues the photo again
    assert store.put_pending(pending, replace_statuses=("LABELED", "NEEDS_REVIEW")) is True
    assert scheduled.item("uploads/h6/a.jpg")["status"] == "PENDING"  # type: ignore[index]


def test_a_reviewers_decision_is_never_replaced_by_pending(scheduled: Aws) -> None:
    # Given a photo a reviewer has confirmed, and a new version of it uploaded
    ref = upload(scheduled, "uploads/h7/spa.jpg", photo((120, 0, 120)))
    scheduled.dynamodb.put_item(
        TableName=TABLE,
        Item={
            "image_uri": {"S": ref.image_uri},
            "status": {"S": "REVIEWED"},
            "review_decision": {"S": "confirm"},
            "etag": {"S": "older"},
            "source_last_modified": {"S": "2020-01-01T00:00:00.000000Z"},
        },
    )
    # When the scheduled labeller sees the upload, Then it keeps the decision
    outcome = recorder(scheduled).process(ref)
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, "a reviewer has decided this photo")
    assert scheduled.item("uploads/h7/spa.jpg")["status"] == "REVIEWED"  # type: ignore[index]


def test_the_backfill_records_pending_from_a_head_request_without_downloading(scheduled: Aws) -> None:
    # Given an archived photo, one too large to ever be a model input, and a listed photo deleted since
    ref = upload(scheduled, "archive/h8/old.jpg", photo((0, 120, 240)))
    big = upload(scheduled, "archive/h8/huge.jpg", b"x" * 2048)
    gone = ObjectRef(BUCKET, "archive/h8/gone.jpg", "0" * 32)
    environ = {**os.environ, "UPLOAD_PREFIX": "", "HOTEL_ID_PATTERN": r"^archive/(?P<hotel_id>[^/]+)/"}
    config = replace(labeller_config(environ), max_object_bytes=1024)
    labeller = recorder(scheduled, validate=False, config=config)

    # When the backfill's labeller records them
    outcomes = [labeller.process(r) for r in (ref, big, gone)]

    # Then nothing was downloaded: the photo waits, the oversized file is rejected, the deleted one is MISSING
    assert [o.status for o in outcomes] == [Status.PENDING, Status.REJECTED, Status.MISSING]
    assert labeller._objects.downloads == 0  # type: ignore[attr-defined]
    item = scheduled.item("archive/h8/old.jpg")
    assert (item["status"], item["etag"], item["hotel_id"]) == ("PENDING", ref.etag, "h8")  # type: ignore[index]
    assert "larger than the 1,024-byte limit" in scheduled.item("archive/h8/huge.jpg")["reason"]  # type: ignore[index]


def test_the_backfill_handler_counts_pending_photos_in_scheduled_mode(scheduled: Aws) -> None:
    # Given two uploaded photos, one already waiting
    first = upload(scheduled, "uploads/h9/a.jpg", photo((240, 0, 0)))
    upload(scheduled, "uploads/h9/b.jpg", photo((0, 0, 0)))
    assert recorder(scheduled).process(first).status is Status.PENDING
    event = {
        "Items": [{"Key": "uploads/h9/a.jpg", "Etag": f'"{first.etag}"'}, {"Key": "uploads/h9/b.jpg"}],
        "BatchInput": {"bucket": BUCKET, "reclassify": False},
    }
    # When the backfill handler runs the batch
    summary = handler.backfill_handler(event, FakeContext())
    # Then one more photo waits for a window and the waiting one is skipped
    assert (summary["pending"], summary["skipped"], summary["labeled"]) == (1, 1, 0)
    assert sorted(pending_uris(scheduled)) == [
        f"s3://{BUCKET}/uploads/h9/a.jpg",
        f"s3://{BUCKET}/uploads/h9/b.jpg",
    ]


def test_a_photo_deleted_while_pending_ends_missing_and_leaves_the_queue(scheduled: Aws) -> None:
    # Given a PENDING photo that is then deleted
    ref = upload(scheduled, "uploads/h10/gone.jpg", photo((240, 240, 0)))
    assert recorder(scheduled).process(ref).status is Status.PENDING
    scheduled.s3.delete_object(Bucket=BUCKET, Key="uploads/h10/gone.jpg")

    # When the window's labeller reaches it
    outcome = window_labeller(scheduled).prepare(ref)

    # Then it is recorded MISSING (terminal): the next window does not find it again
    assert isinstance(outcome, Outcome) and outcome.status is Status.MISSING
    assert scheduled.item("uploads/h10/gone.jpg")["status"] == "MISSING"  # type: ignore[index]
    assert pending_uris(scheduled) == []


def test_a_photo_replaced_while_pending_is_labelled_at_its_newer_version_only(scheduled: Aws) -> None:
    # Given a PENDING photo replaced by a newer version, whose notification was processed too
    old = upload(scheduled, "uploads/h11/room.jpg", photo((0, 0, 240)))
    assert recorder(scheduled).process(old).status is Status.PENDING
    new = upload(scheduled, "uploads/h11/room.jpg", photo((240, 0, 0)))
    assert recorder(scheduled).process(new).status is Status.PENDING
    labeller = window_labeller(scheduled)

    # When a window holds both versions (an older manifest line, then the current one)
    stale = labeller.prepare(old)
    current = labeller.prepare(new)

    # Then the older version is skipped unread, and only the newer one is labelled
    assert isinstance(stale, Outcome) and stale.status is Status.SKIPPED
    assert isinstance(current, Prepared)
    labeller.record(current, vllm_answer("Room"))
    item = scheduled.item("uploads/h11/room.jpg")
    assert (item["etag"], item["label"]) == (new.etag, "Room")  # type: ignore[index]
    # and a late answer for the older version (a job that read it just before it was replaced) loses
    read_earlier = replace(
        current.stored, etag=old.etag, last_modified=current.stored.last_modified.replace(year=2020)
    )
    assert labeller.record(
        Prepared(old, read_earlier, current.model, current.request), vllm_answer("Pool")
    ).status == (Status.SKIPPED)
    assert scheduled.item("uploads/h11/room.jpg")["label"] == "Room"  # type: ignore[index]


def test_missing_replaces_only_the_pending_item_of_the_same_version(scheduled: Aws) -> None:
    store = DynamoLabelStore(scheduled.dynamodb, TABLE)
    uri = f"s3://{BUCKET}/uploads/h12/a.jpg"
    pending = {"image_uri": uri, "status": "PENDING", "etag": "e2", "source_last_modified": "2026-11-25T12:00:02Z"}
    assert store.put_pending({**pending, "model": MODEL_ID})
    missing = {"image_uri": uri, "status": "MISSING", "etag": "e1", "reason": "gone", "model": MODEL_ID}
    # A deleted older version leaves the newer version's PENDING alone; the real-time rule never replaces
    assert store.put_missing(missing, replace_pending=True) is False
    assert store.put_missing({**missing, "etag": "e2"}) is False
    # while the deleted version a window was asked for ends MISSING
    assert store.put_missing({**missing, "etag": "e2"}, replace_pending=True) is True
    assert scheduled.item("uploads/h12/a.jpg")["status"] == "MISSING"  # type: ignore[index]
