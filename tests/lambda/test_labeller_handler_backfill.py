"""The backfill handler in-process against moto: Distributed Map batches of listed or inventoried photos."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

import handler
import pytest
from handler_testkit import use_labeller
from labeller_testkit import BUCKET, Aws, FakeContext, photo, queue_endpoint_reply, vllm_answer


def test_backfill_labels_new_items_skips_finished_ones_and_reports_counts(aws: Aws) -> None:
    # Given one photo already labelled by this model, one new photo, one foreign key and one malformed item
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h9/old.jpg", Body=photo((0, 0, 0)))
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h9/new.jpg", Body=photo((0, 0, 120)))
    queue_endpoint_reply(vllm_answer("Lobby"))
    queue_endpoint_reply(vllm_answer("Bar"))
    event = {
        "Items": [{"Key": "uploads/h9/old.jpg"}],
        "BatchInput": {"bucket": BUCKET, "reclassify": False},
    }
    assert handler.backfill_handler(event, FakeContext())["labeled"] == 1

    # When a listing batch (quoted ETags, as ListObjectsV2 gives them) is backfilled
    etag = aws.s3.head_object(Bucket=BUCKET, Key="uploads/h9/old.jpg")["ETag"]
    event = {
        "Items": [
            {"Key": "uploads/h9/old.jpg", "ETag": etag},
            {"Key": "uploads/h9/new.jpg"},
            {"Key": "archive/h9/x.jpg"},
            {"ETag": "no key"},
        ],
        "BatchInput": {"bucket": BUCKET, "reclassify": False},
    }
    summary = handler.backfill_handler(event, FakeContext())

    # Then the finished photo is skipped, the new one labelled, and the counts say so
    assert summary == {
        "items": 4,
        "invalid": 1,
        "labeled": 1,
        "needs_review": 0,
        "rejected": 0,
        "missing": 0,
        "skipped": 2,
        "transient": 0,
        "deferred": 0,
    }
    assert aws.item("uploads/h9/new.jpg")["label"] == "Bar"  # type: ignore[index]


def test_backfill_raises_a_retryable_error_after_the_batch_when_time_ran_out_or_items_failed(aws: Aws) -> None:
    # Given two photos and a batch naming both
    for name, color in (("a", (240, 0, 0)), ("b", (0, 240, 0))):
        aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/h8/{name}.jpg", Body=photo(color))
    event = {
        "Items": [{"Key": "uploads/h8/a.jpg"}, {"Key": "uploads/h8/b.jpg"}],
        "BatchInput": {"bucket": BUCKET},
    }

    # When the invocation is nearly out of time
    # Then it labels one item, defers the other and asks the map to retry
    queue_endpoint_reply(vllm_answer("Room"))
    with pytest.raises(handler.TransientBatchError, match="1 were not reached"):
        handler.backfill_handler(event, FakeContext(remaining_ms=1_000))
    assert aws.item("uploads/h8/a.jpg")["label"] == "Room"  # type: ignore[index]
    assert aws.item("uploads/h8/b.jpg") is None

    # When the retry meets an endpoint that answers garbage (moto's default reply is not a chat completion)
    # Then the finished item is skipped, the other fails, and the error comes after the whole batch
    with pytest.raises(handler.TransientBatchError, match="1 item"):
        handler.backfill_handler(event, FakeContext())
    assert aws.item("uploads/h8/b.jpg") is None


def listing_items(aws: Aws, prefix: str) -> list[dict[str, Any]]:
    """The items the Step Functions ListObjectsV2 reader hands the map: `Etag` (quoted), epoch `LastModified`."""
    contents = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    return [
        {
            "Etag": entry["ETag"],
            "Key": entry["Key"],
            "LastModified": entry["LastModified"].timestamp(),
            "Size": entry["Size"],
            "StorageClass": entry["StorageClass"],
        }
        for entry in contents
    ]


def test_a_resumed_listing_backfill_costs_one_table_read_per_finished_photo_not_a_download(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a backfill over three photos that stopped after labelling two of them
    for name, color in (("a", (240, 0, 0)), ("b", (0, 240, 0)), ("c", (0, 0, 240))):
        aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/h6/{name}.jpg", Body=photo(color))
    items = listing_items(aws, "uploads/h6/")
    assert all(item["Etag"].startswith('"') for item in items)  # the shape the reader really emits
    batch_input = {"bucket": BUCKET, "reclassify": False}
    queue_endpoint_reply(vllm_answer("Room"))
    queue_endpoint_reply(vllm_answer("Pool"))
    use_labeller(aws, monkeypatch)
    assert handler.backfill_handler({"Items": items[:2], "BatchInput": batch_input}, FakeContext())["labeled"] == 2

    # When the backfill is started again over the same listing
    objects = use_labeller(aws, monkeypatch)
    queue_endpoint_reply(vllm_answer("Spa"))
    summary = handler.backfill_handler({"Items": items, "BatchInput": batch_input}, FakeContext())

    # Then the finished photos are skipped on their ETag alone: only the unfinished one is downloaded
    assert (summary["skipped"], summary["labeled"], objects.downloads) == (2, 1, 1)
    assert [aws.item(f"uploads/h6/{name}.jpg")["label"] for name in "abc"] == ["Room", "Pool", "Spa"]  # type: ignore[index]


def test_an_inventory_backfill_labels_the_decoded_keys_and_an_unknown_key_encoding_writes_nothing(
    aws: Aws,
) -> None:
    # Given a photo whose key has a space and a plus, listed in an S3 Inventory CSV report (URL-encoded keys)
    key = "uploads/h7/sea view+1.jpg"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo((120, 120, 0)))
    head = aws.s3.head_object(Bucket=BUCKET, Key=key)
    row = {
        "Bucket": BUCKET,
        "Key": quote_plus(key, safe="/"),
        "Size": str(head["ContentLength"]),
        "LastModifiedDate": head["LastModified"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "ETag": head["ETag"].strip('"'),
    }
    assert row["Key"] == "uploads/h7/sea+view%2B1.jpg"

    # When a batch of it arrives with a key_encoding the handler does not know
    # Then the whole batch is refused with a clear error, before anything is read or written
    with pytest.raises(ValueError, match="key_encoding"):
        handler.backfill_handler(
            {"Items": [row], "BatchInput": {"bucket": BUCKET, "key_encoding": "percent"}}, FakeContext()
        )
    assert aws.items() == []

    # When it arrives as the manifest map sends it (key_encoding "url")
    queue_endpoint_reply(vllm_answer("Terrace/Patio"))
    summary = handler.backfill_handler(
        {"Items": [row], "BatchInput": {"bucket": BUCKET, "reclassify": False, "key_encoding": "url"}},
        FakeContext(),
    )

    # Then the photo is labelled under its real key, and no item exists under the encoded one
    assert summary["labeled"] == 1
    item = aws.item(key)
    assert item is not None and (item["label"], item["hotel_id"]) == ("Terrace/Patio", "h7")
    assert len(aws.items()) == 1
