"""What a review request carries, checked before the service acts on it (review_api/core.py): the queue's query
parameters, photo ids, the token naming the state a photo was shown in and the paging cursor; and the errors the
API answers with. The signed-in reviewer is review_api/identity.py. No boto3 here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REVIEWED = "REVIEWED"
REVIEW_REJECTED = "REVIEW_REJECTED"
# Statuses a reviewer can filter on: the labeller's (docs/interfaces.md) and the two a decision writes.
STATUSES = ("NEEDS_REVIEW", "LABELED", "REJECTED", "MISSING", REVIEWED, REVIEW_REJECTED)
DECISIONS = ("confirm", "correct", "reject")
DEFAULT_STATUS = "NEEDS_REVIEW"
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ReviewError(Exception):
    """An error the API answers with `status` and `message` (and optionally the photo's current state)."""

    status = 400

    def __init__(self, message: str, *, current: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.current = current


class BadRequest(ReviewError):
    status = 400


class Unauthorized(ReviewError):
    status = 401


class Forbidden(ReviewError):
    status = 403


class NotFound(ReviewError):
    status = 404


class Conflict(ReviewError):
    status = 409


@dataclass(frozen=True)
class Filters:
    hotel_id: str | None = None
    label: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None


@dataclass(frozen=True)
class Expected:
    """The item's state when it was shown: a write succeeds only if it still holds."""

    status: str
    classified_at: str
    reviewed_at: str | None


# -- tokens and cursors -------------------------------------------------------------------------------------


def _encode(value: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(text: str, what: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"{what} is malformed (copy it unchanged from the API's answer)") from error


def photo_id(image_uri: str) -> str:
    """The URL-safe id of a photo in API paths (an image URI holds '/' and ':')."""
    return base64.urlsafe_b64encode(image_uri.encode()).decode().rstrip("=")


def image_uri_of(photo_id_text: str) -> str:
    try:
        uri = base64.urlsafe_b64decode(photo_id_text + "=" * (-len(photo_id_text) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"photo id {photo_id_text[:80]!r} is malformed") from error
    if not uri.startswith("s3://"):
        raise BadRequest(f"photo id {photo_id_text[:80]!r} does not name an s3:// photo")
    return uri


def token_of(item: Mapping[str, Any]) -> str:
    return _encode({"s": item.get("status"), "c": item.get("classified_at"), "r": item.get("reviewed_at")})


def expected_of(token: Any) -> Expected:
    if not isinstance(token, str) or not token:
        raise BadRequest("'token' is required: send the token of the photo as it was shown")
    data = _decode(token, "token")
    if not isinstance(data, dict) or not isinstance(data.get("s"), str) or not isinstance(data.get("c"), str):
        raise BadRequest("token is malformed (copy it unchanged from the API's answer)")
    reviewed_at = data.get("r")
    return Expected(status=data["s"], classified_at=data["c"], reviewed_at=reviewed_at or None)


def cursor_of(key: Mapping[str, Any]) -> str:
    """The opaque cursor of the next page: DynamoDB's ExclusiveStartKey for the status index."""
    return _encode(key)


def start_key_of(cursor: str, status: str, since: str | None = None, until: str | None = None) -> dict[str, Any]:
    """The ExclusiveStartKey a cursor names; BadRequest when it is malformed, belongs to another queue or lies
    outside the date range.

    DynamoDB refuses a start key outside the key condition ("The provided starting key is outside query boundaries
    based on provided conditions", a ValidationException: floci-io/floci#3389 reproduces AWS's answer), moto
    silently ignores it, so the check is made here, where a test can hold it.
    """
    key = _decode(cursor, "cursor")
    if (
        not isinstance(key, dict)
        or set(key) != {"image_uri", "status", "classified_at"}
        or not all(isinstance(v, str) for v in key.values())
    ):
        raise BadRequest("cursor is malformed (copy it unchanged from the API's answer)")
    if key["status"] != status:
        raise BadRequest(f"cursor belongs to the {key['status']} queue, not {status}: start again")
    at = key["classified_at"]
    if (since and at < since) or (until and at > f"{until}~"):
        raise BadRequest(
            f"cursor ({at[:10]}) lies outside the date range {since or '…'} to {until or '…'}: "
            "start again without it"
        )
    return key


# -- the queue's query --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    status: str = DEFAULT_STATUS
    filters: Filters = Filters()
    since: str | None = None  # YYYY-MM-DD, inclusive, on classified_at
    until: str | None = None  # YYYY-MM-DD, inclusive
    newest_first: bool = False
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str | None], labels: Sequence[str]) -> ListQuery:
        """From query-string parameters; BadRequest names the parameter that is wrong."""
        status = params.get("status") or DEFAULT_STATUS
        if status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        label = params.get("label") or None
        if label is not None and label not in labels:
            raise BadRequest(f"label {label!r} is not in the taxonomy")
        bounds = {name: _number(params.get(name), name) for name in ("min_confidence", "max_confidence")}
        low, high = bounds["min_confidence"], bounds["max_confidence"]
        if low is not None and high is not None and low > high:
            raise BadRequest(f"min_confidence {low} is above max_confidence {high}")
        dates = {name: params.get(name) or None for name in ("since", "until")}
        for name, value in dates.items():
            if value is not None and not _DATE_RE.match(value):
                raise BadRequest(f"{name} must be a date YYYY-MM-DD, got {value!r}")
        if dates["since"] and dates["until"] and dates["since"] > dates["until"]:
            # DynamoDB refuses BETWEEN with its bounds reversed (ValidationException "The BETWEEN condition was
            # provided a range where the lower bound is bigger than the upper bound", architect/dynalite#55);
            # moto answers an empty page, which the page would show as "nothing left".
            raise BadRequest(f"since {dates['since']} is after until {dates['until']}: the date range is empty")
        limit_text = params.get("limit") or str(DEFAULT_PAGE_SIZE)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE_SIZE:
            raise BadRequest(f"limit must be 1..{MAX_PAGE_SIZE}, got {limit_text!r}")
        order = params.get("order") or "oldest"
        if order not in ("oldest", "newest"):
            raise BadRequest(f"order must be oldest or newest, got {order!r}")
        cursor = params.get("cursor") or None
        if cursor is not None:
            start_key_of(cursor, status, dates["since"], dates["until"])
        return cls(
            status=status,
            filters=Filters(
                hotel_id=params.get("hotel") or None, label=label, min_confidence=low, max_confidence=high
            ),
            since=dates["since"],
            until=dates["until"],
            newest_first=order == "newest",
            limit=int(limit_text),
            cursor=cursor,
        )

    def start_key(self) -> dict[str, Any] | None:
        return start_key_of(self.cursor, self.status, self.since, self.until) if self.cursor else None

    @property
    def until_key(self) -> str | None:
        # classified_at is ISO-8601 ('2026-12-01T10:...'); '~' sorts after every character of a timestamp.
        return f"{self.until}~" if self.until else None


def _number(text: str | None, name: str) -> float | None:
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError as error:
        raise BadRequest(f"{name} must be a number between 0 and 1, got {text!r}") from error
    if not 0.0 <= value <= 1.0:
        raise BadRequest(f"{name} must be between 0 and 1, got {text!r}")
    return value


__all__ = [
    "DECISIONS",
    "REVIEWED",
    "REVIEW_REJECTED",
    "STATUSES",
    "BadRequest",
    "Conflict",
    "Expected",
    "Filters",
    "Forbidden",
    "ListQuery",
    "NotFound",
    "ReviewError",
    "Unauthorized",
    "cursor_of",
    "expected_of",
    "image_uri_of",
    "photo_id",
    "start_key_of",
    "token_of",
]
