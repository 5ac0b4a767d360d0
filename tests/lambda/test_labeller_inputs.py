"""labeller_inputs: S3 notifications and backfill batches become the photo versions to label."""

from __future__ import annotations

import json

import pytest
from labeller_inputs import BackfillBatch, ObjectRef, manifest_line, parse_manifest, parse_s3_notification


def s3_event(key: str, event_name: str = "ObjectCreated:Put", etag: str = "abc") -> str:
    record = {
        "eventName": event_name,
        "s3": {"bucket": {"name": "hotel-photos"}, "object": {"key": key, "eTag": etag, "size": 10}},
    }
    return json.dumps({"Records": [record]})


def test_notifications_are_url_decoded_and_test_events_or_other_events_yield_nothing() -> None:
    refs = parse_s3_notification(s3_event("uploads/h1/sea+view%2B1.jpg"))
    assert refs == [ObjectRef("hotel-photos", "uploads/h1/sea view+1.jpg", "abc")]
    assert parse_s3_notification(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    assert parse_s3_notification(s3_event("uploads/h1/a.jpg", event_name="ObjectRemoved:Delete")) == []


@pytest.mark.parametrize("body", ["hello", "[1, 2]", json.dumps({"foo": 1})])
def test_a_message_that_is_not_an_s3_notification_is_an_error_not_silently_dropped(body: str) -> None:
    with pytest.raises(ValueError, match=r"not JSON|not an S3 notification|no S3 'Records'"):
        parse_s3_notification(body)


def test_listing_items_keep_their_version_whether_the_field_is_spelled_etag_or_etag_upper() -> None:
    # Given a batch as the Step Functions ListObjectsV2 reader emits it (`Etag`, quoted, epoch LastModified),
    # plus one item spelled like the S3 API (`ETag`)
    batch = BackfillBatch.parse(
        {
            "Items": [
                {
                    "Etag": '"05704fbdccb224cb01c59005bebbad28"',
                    "Key": "uploads/h1/n02085620_1073.jpg",
                    "LastModified": 1668699881,
                    "Size": 34910,
                    "StorageClass": "STANDARD",
                },
                {"ETag": '"b1946ac92492d2347c6235b4d2611184"', "Key": "uploads/h1/sea+view.jpg", "Size": 6},
                {"Key": "uploads/h1/no-etag.jpg", "Etag": ""},
            ],
            "BatchInput": {"bucket": "hotel-photos", "reclassify": False},
        }
    )
    # Then every ref carries the bare ETag, and listed keys are taken as they are (not URL-decoded)
    assert batch.refs == (
        ObjectRef("hotel-photos", "uploads/h1/n02085620_1073.jpg", "05704fbdccb224cb01c59005bebbad28"),
        ObjectRef("hotel-photos", "uploads/h1/sea+view.jpg", "b1946ac92492d2347c6235b4d2611184"),
        ObjectRef("hotel-photos", "uploads/h1/no-etag.jpg", None),
    )
    assert batch.invalid == ()


def test_inventory_items_have_their_url_encoded_keys_decoded() -> None:
    # Given S3 Inventory CSV rows (string columns, URL-encoded keys, bare ETags) and key_encoding "url"
    batch = BackfillBatch.parse(
        {
            "Items": [
                {
                    "Bucket": "hotel-photos",
                    "Key": "uploads/h1/sea+view%2B1.jpg",
                    "Size": "2226",
                    "LastModifiedDate": "2022-11-16T00:29:32.000Z",
                    "ETag": "05704fbdccb224cb01c59005bebbad28",
                },
                {"Bucket": "hotel-photos", "Key": "uploads/h1/caf%C3%A9%20terrace.jpg", "Size": "10"},
            ],
            "BatchInput": {"bucket": "hotel-photos", "reclassify": False, "key_encoding": "url"},
        }
    )
    # Then the keys are the objects' real names
    assert [ref.key for ref in batch.refs] == ["uploads/h1/sea view+1.jpg", "uploads/h1/café terrace.jpg"]
    assert batch.refs[0].etag == "05704fbdccb224cb01c59005bebbad28" and batch.refs[1].etag is None


@pytest.mark.parametrize("encoding", ["URL", "base64", "", True])
def test_an_unknown_key_encoding_refuses_the_whole_batch(encoding: object) -> None:
    event = {"Items": [{"Key": "uploads/h/a.jpg"}], "BatchInput": {"bucket": "b", "key_encoding": encoding}}
    with pytest.raises(ValueError, match=r"key_encoding.*absent \(raw keys\) or one of \['url'\]"):
        BackfillBatch.parse(event)


def test_backfill_batch_parsing_refuses_malformed_items_with_a_reason() -> None:
    batch = BackfillBatch.parse(
        {
            "Items": [
                {"Key": "uploads/h/a.jpg", "ETag": '"e1"'},
                {"Key": ""},
                "oops",
                {"Key": "x", "Bucket": "b2"},
            ],
            "BatchInput": {"bucket": "hotel-photos", "reclassify": True},
        }
    )
    assert batch.refs == (ObjectRef("hotel-photos", "uploads/h/a.jpg", "e1"), ObjectRef("b2", "x", None))
    assert batch.reclassify is True and len(batch.invalid) == 2
    with pytest.raises(ValueError, match="Items"):
        BackfillBatch.parse({"BatchInput": {}})
    with pytest.raises(ValueError, match="reclassify"):
        BackfillBatch.parse({"Items": [], "BatchInput": {"reclassify": "yes"}})


def test_manifest_lines_round_trip_and_malformed_lines_are_named() -> None:
    # Given photo versions a window's planner writes, one with the hotel its PENDING item named
    refs = [
        ObjectRef("photos", "uploads/h1/pool 1.jpg", "e1", hotel_id="h1"),
        ObjectRef("photos", "archive/2019/ü.jpg", "e2"),
    ]
    text = "\n".join(manifest_line(ref) for ref in refs) + "\n\n"
    # When the job reads them back, with two broken lines appended
    parsed, invalid = parse_manifest(text + 'not json\n{"bucket": "photos", "key": "k"}\n', "shard-00000.jsonl")
    # Then the versions come back as written and each broken line is named with its position
    assert parsed == refs
    assert [reason.split(":", 2)[:2] for reason in invalid] == [
        ["shard-00000.jsonl", "4"],
        ["shard-00000.jsonl", "5"],
    ]
    assert "bucket, key and etag" in invalid[1]


def test_a_manifest_line_needs_the_version() -> None:
    with pytest.raises(ValueError, match="needs the version's ETag"):
        manifest_line(ObjectRef("photos", "uploads/a.jpg"))
