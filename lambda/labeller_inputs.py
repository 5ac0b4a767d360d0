"""What the labeller is asked to label: S3 notifications (uploads), Distributed Map batches (backfill) and the
manifest lines of a scheduled window's labelling job.

All become ObjectRefs, the photo versions labeller_core.Labeller takes. Only the standard library here: the
backfill stack's tests load this file on its own to check that the batches the map sends parse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str  # decoded
    etag: str | None = None  # the version the caller saw (notification or listing); None = whatever is current
    # The hotel the PENDING item named (a window's manifest); None: matched from the key by HOTEL_ID_PATTERN.
    hotel_id: str | None = None

    @property
    def image_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_notification(body: str) -> list[ObjectRef]:
    """The ObjectCreated records of an S3 notification (an SQS message body); [] for s3:TestEvent.

    ValueError when the body is not an S3 notification at all (a message someone sent by hand): that is a
    poison message, and the handler lets it fail so it ends in the DLQ instead of vanishing.
    """
    try:
        message = json.loads(body)
    except json.JSONDecodeError as error:
        raise ValueError(f"message body is not JSON: {body[:200]!r}") from error
    if not isinstance(message, dict):
        raise ValueError(f"message body is not an S3 notification: {body[:200]!r}")
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise ValueError(f"message body has no S3 'Records': {body[:200]!r}")
    refs: list[ObjectRef] = []
    for record in records:
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        try:
            bucket = record["s3"]["bucket"]["name"]
            s3_object = record["s3"]["object"]
            key = unquote_plus(s3_object["key"])  # keys arrive URL-encoded ('+' for spaces)
        except (KeyError, TypeError) as error:
            raise ValueError(f"S3 record lacks bucket/object key: {str(record)[:200]}") from error
        refs.append(ObjectRef(bucket=bucket, key=key, etag=clean_etag(s3_object.get("eTag"))))
    return refs


def clean_etag(etag: str | None) -> str | None:
    """ETags arrive quoted from GetObject/ListObjects and bare from notifications; compare them bare."""
    if not etag:
        return None
    return etag.strip().strip('"') or None


# -- backfill batches ---------------------------------------------------------------------------------------

# BatchInput.key_encoding: how the items spell their keys. Absent = raw (ListObjectsV2 listings);
# "url" = URL-encoded with '+' for spaces, as S3 Inventory CSV reports write them.
KEY_ENCODINGS = frozenset({"url"})


@dataclass(frozen=True)
class BackfillBatch:
    refs: tuple[ObjectRef, ...]
    reclassify: bool
    invalid: tuple[str, ...]  # why each malformed item was refused (they cannot succeed on retry)

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> BackfillBatch:
        """A Distributed Map batch: {"Items": [...], "BatchInput": {"bucket", "reclassify"?, "key_encoding"?}}.

        Items as the item readers emit them (stacks/labelling/backfill.py passes them through unchanged):
        - ListObjectsV2 (prefix input): {"Etag": '"<md5>"', "Key", "LastModified": <epoch s>, "Size",
          "StorageClass"}; the bucket is BatchInput.bucket. Step Functions spells it `Etag`; `ETag` works too.
        - S3 Inventory manifest: the report's columns as strings, {"Bucket", "Key", "Size", "LastModifiedDate",
          "ETag"?, ...}, keys URL-encoded (BatchInput.key_encoding = "url").
        With the version's ETag a photo that already has a final result costs one table read, no download.
        """
        if not isinstance(event, Mapping) or not isinstance(event.get("Items"), list):
            raise ValueError("a backfill batch needs an 'Items' list (Distributed Map with an ItemBatcher)")
        batch_input = event.get("BatchInput") or {}
        if not isinstance(batch_input, Mapping):
            raise ValueError(f"'BatchInput' must be an object, got {type(batch_input).__name__}")
        reclassify = batch_input.get("reclassify", False)
        if not isinstance(reclassify, bool):
            raise ValueError(f"'BatchInput.reclassify' must be true or false, got {reclassify!r}")
        key_encoding = batch_input.get("key_encoding")
        if key_encoding is not None and key_encoding not in KEY_ENCODINGS:
            # Guessing would label (or record MISSING) the wrong keys for the whole batch: refuse it instead.
            raise ValueError(
                f"'BatchInput.key_encoding' must be absent (raw keys) or one of {sorted(KEY_ENCODINGS)}, "
                f"got {key_encoding!r}"
            )
        refs: list[ObjectRef] = []
        invalid: list[str] = []
        for position, item in enumerate(event["Items"]):
            if not isinstance(item, Mapping):
                invalid.append(f"item {position} is not an object: {str(item)[:200]}")
                continue
            bucket = item.get("Bucket") or batch_input.get("bucket")
            key = item.get("Key")
            if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
                invalid.append(f"item {position} has no Key/Bucket (BatchInput.bucket): {str(item)[:200]}")
                continue
            if key_encoding == "url":
                key = unquote_plus(key)
            etag = item.get("ETag") or item.get("Etag")
            etag = clean_etag(etag) if isinstance(etag, str) else None
            refs.append(ObjectRef(bucket=bucket, key=key, etag=etag))
        return cls(refs=tuple(refs), reclassify=reclassify, invalid=tuple(invalid))


# -- manifest lines (endpoint.mode scheduled) ---------------------------------------------------------------------
# One JSON object per line, written by the window's planner from PENDING items (lambda/window_core.py) and read by
# the labelling job (labelling_job/run.py): {"bucket", "key", "etag", "hotel_id"?}. The ETag pins the version.
MANIFEST_FIELDS = ("bucket", "key", "etag", "hotel_id")


def manifest_line(ref: ObjectRef) -> str:
    """The manifest line of a photo version (its ETag is required: a window labels exact versions)."""
    if not ref.etag:
        raise ValueError(f"{ref.image_uri}: a manifest line needs the version's ETag")
    fields = {"bucket": ref.bucket, "key": ref.key, "etag": ref.etag}
    if ref.hotel_id:
        fields["hotel_id"] = ref.hotel_id
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def parse_manifest(text: str, source: str) -> tuple[list[ObjectRef], list[str]]:
    """The photo versions of a manifest shard, and why each malformed line was refused (`source`:line)."""
    refs: list[ObjectRef] = []
    invalid: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as error:
            invalid.append(f"{source}:{number}: not JSON ({error})")
            continue
        if not isinstance(fields, dict) or any(
            not isinstance(fields.get(name), str) or not fields[name] for name in ("bucket", "key", "etag")
        ):
            invalid.append(f"{source}:{number}: needs non-empty string bucket, key and etag: {line[:200]}")
            continue
        hotel_id = fields.get("hotel_id")
        refs.append(
            ObjectRef(
                bucket=fields["bucket"],
                key=fields["key"],
                etag=clean_etag(fields["etag"]),
                hotel_id=hotel_id if isinstance(hotel_id, str) and hotel_id else None,
            )
        )
    return refs, invalid
