"""async_messages: SageMaker's notifications and the tickets stored beside the requests."""

from __future__ import annotations

import json

import pytest
from async_messages import Ticket, parse_notification
from async_testkit import failure_notification, success_notification


def test_notifications_are_read_raw_or_from_an_sns_envelope_and_anything_else_is_refused() -> None:
    submission = type("S", (), {"input_location": "s3://b/requests/x/request.json", "inference_id": "x"})()
    raw = parse_notification(success_notification(submission, "s3://b/responses/1.out"))  # type: ignore[arg-type]
    wrapped = parse_notification(success_notification(submission, "s3://b/responses/1.out", envelope=True))  # type: ignore[arg-type]
    assert raw == wrapped and raw.succeeded and raw.output_location == "s3://b/responses/1.out"
    failed = parse_notification(failure_notification(submission, "timeout"))  # type: ignore[arg-type]
    assert not failed.succeeded and failed.failure_reason == "timeout"
    for body in (
        "not json",
        "[]",
        json.dumps({"eventSource": "aws:s3"}),
        json.dumps({"eventSource": "aws:sagemaker"}),
    ):
        with pytest.raises(ValueError):
            parse_notification(body)


def test_tickets_round_trip_and_malformed_ones_are_refused() -> None:
    ticket = Ticket("id", "b", "uploads/a b.jpg", "e", "2026-12-01T12:00:00.000000Z", "m", "v1", "h")
    assert Ticket.from_json(ticket.to_json()) == ticket
    for data in (b"{", b"[]", json.dumps({"inference_id": "id"}).encode()):
        with pytest.raises(ValueError):
            Ticket.from_json(data)
