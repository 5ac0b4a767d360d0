"""The automatic path never overwrites a reviewer's decision: uploads, backfill and reclassify, on moto."""

from __future__ import annotations

import handler
import pytest
from labeller_aws import DynamoLabelStore
from labeller_core import HUMAN_DECISION_ATTRIBUTE
from labeller_testkit import BUCKET, MODEL_ID, TABLE, Aws, FakeContext, photo, queue_endpoint_reply, vllm_answer

from review_api.core import DECISION_ATTRIBUTE

FINALS = ("LABELED", "NEEDS_REVIEW", "REJECTED")


def _decide(aws: Aws, key: str, *, human_label: str = "Spa") -> dict:
    """What the review API writes on a confirm/correct (review_api/core.py)."""
    aws.dynamodb.update_item(
        TableName=TABLE,
        Key={"image_uri": {"S": f"s3://{BUCKET}/{key}"}},
        UpdateExpression="SET #s = :s, review_decision = :d, human_label = :h, reviewed_by = :w, reviewed_at = :t",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":s": {"S": "REVIEWED"},
            ":d": {"S": "correct"},
            ":h": {"S": human_label},
            ":w": {"S": "ana@example.com"},
            ":t": {"S": "2026-12-01T10:00:00.000+00:00"},
        },
    )
    item = aws.item(key)
    assert item is not None
    return item


def test_the_labeller_and_the_review_api_name_the_same_decision_attribute() -> None:
    assert HUMAN_DECISION_ATTRIBUTE == DECISION_ATTRIBUTE


def test_a_reviewed_photo_is_left_alone_by_a_new_upload_a_backfill_and_a_reclassify(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a photo the model found uncertain, then a reviewer corrected to Spa
    key = "uploads/h1/a.jpg"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo((0, 0, 0)))
    queue_endpoint_reply(vllm_answer("Room", logprob=-2.0))
    event = {"Items": [{"Key": key}], "BatchInput": {"bucket": BUCKET, "reclassify": False}}
    assert handler.backfill_handler(event, FakeContext())["needs_review"] == 1
    decided = _decide(aws, key)

    # When the backfill runs again, a reclassify runs with another model, and a new version is uploaded
    queue_endpoint_reply(vllm_answer("Pool"))
    reclassify = {"Items": [{"Key": key}], "BatchInput": {"bucket": BUCKET, "reclassify": True}}
    summaries = [handler.backfill_handler(event, FakeContext())]
    handler.get_labeller.cache_clear()
    monkeypatch.setenv("MODEL_ID", "llava-next-hotel-v2")
    summaries.append(handler.backfill_handler(reclassify, FakeContext()))
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo((240, 240, 240)))
    summaries.append(handler.backfill_handler(event, FakeContext()))

    # Then each is skipped and the item is exactly the reviewer's
    assert [s["skipped"] for s in summaries] == [1, 1, 1]
    assert aws.item(key) == decided


def test_the_conditional_write_refuses_a_result_racing_a_decision(aws: Aws) -> None:
    # Given a labeller that read the item before a reviewer decided it (so its pre-check saw no decision)
    store = DynamoLabelStore(aws.dynamodb, TABLE)
    key = "uploads/h1/b.jpg"
    uri = f"s3://{BUCKET}/{key}"
    base = {
        "image_uri": uri,
        "status": "NEEDS_REVIEW",
        "label": "Room",
        "confidence": 0.41,
        "model": MODEL_ID,
        "etag": "v1",
        "source_last_modified": "2026-11-25T12:00:01.000000Z",
        "classified_at": "2026-11-25T12:00:02.000+00:00",
    }
    assert store.put_result(base, final_statuses=FINALS)
    decided = _decide(aws, key)

    # When its result for a newer version (or from another model) arrives after the decision
    newer = {**base, "label": "Pool", "status": "LABELED", "etag": "v2"}
    newer["source_last_modified"] = "2026-11-25T12:00:09.000000Z"
    other_model = {**base, "model": "llava-next-hotel-v2", "label": "Bar"}

    # Then neither is written and the decision stands
    assert not store.put_result(newer, final_statuses=FINALS)
    assert not store.put_result(other_model, final_statuses=FINALS)
    assert aws.item(key) == decided
    # and without a decision the same newer result would have been written (the refusal is the decision's doing)
    aws.dynamodb.update_item(
        TableName=TABLE, Key={"image_uri": {"S": uri}}, UpdateExpression=f"REMOVE {HUMAN_DECISION_ATTRIBUTE}"
    )
    assert store.put_result(newer, final_statuses=FINALS)
