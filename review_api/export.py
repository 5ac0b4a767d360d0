"""The rows of the reviewed-photos manifest, shared by the API's export route (leads) and tools/review_export.py.

One JSON object per decided photo, its latest decision: `image` (s3://bucket/key), `version_id` (the version the
reviewer saw), `label` (the reviewer's; null for a rejected photo), `decision` (confirm | correct | reject),
`model_label`, `confidence`, `status_before_review` (LABELED or NEEDS_REVIEW: what the model had decided, so an
agreement computed from the export knows which photos were audited), `reviewed_by` (e-mail), `reviewed_by_sub`,
`reviewed_at`. `image` + `label` is training_job/build_dataset.py's manifest format; it skips rejected rows.
Rejected photos stay in the export: leaving them out would overstate the model's agreement with reviewers.
No boto3 here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from review_api.inputs import BadRequest

EXPORT_STATUSES = ("REVIEWED", "REVIEW_REJECTED")
MANIFEST_DECISIONS = ("confirm", "correct", "reject")


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def manifest_row(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The manifest row of a labels-table item; None when it carries no human decision."""
    decision = item.get("review_decision")
    if decision not in MANIFEST_DECISIONS:
        return None
    return {
        "image": item["image_uri"],
        "version_id": item.get("version_id"),
        "label": None if decision == "reject" else item.get("human_label"),
        "decision": decision,
        "model_label": item.get("label"),
        "confidence": _number(item.get("confidence")),
        "status_before_review": item.get("status_before_review"),
        "reviewed_by": item.get("reviewed_by"),
        "reviewed_by_sub": item.get("reviewed_by_sub"),
        "reviewed_at": item.get("reviewed_at"),
    }


def export_cursor(status: str, start_key: Mapping[str, Any] | None) -> str:
    """Where the next export page starts: a status of EXPORT_STATUSES and the index key in it (or its start)."""
    data = json.dumps({"s": status, "k": dict(start_key) if start_key else None}, separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def export_start(cursor: str | None) -> tuple[str | None, dict[str, Any] | None]:
    """The (status, start key) a cursor names; the first status from the beginning without one."""
    if cursor is None:
        return EXPORT_STATUSES[0], None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise BadRequest("cursor is malformed (copy it unchanged from the API's answer)") from error
    key = data.get("k") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("s") not in EXPORT_STATUSES
        or not (key is None or (isinstance(key, dict) and key.get("status") == data["s"]))
    ):
        raise BadRequest("cursor is malformed (copy it unchanged from the API's answer)")
    return data["s"], key


def next_export_status(status: str) -> str | None:
    position = EXPORT_STATUSES.index(status) + 1
    return EXPORT_STATUSES[position] if position < len(EXPORT_STATUSES) else None


__all__ = [
    "EXPORT_STATUSES",
    "export_cursor",
    "export_start",
    "manifest_row",
    "next_export_status",
]
