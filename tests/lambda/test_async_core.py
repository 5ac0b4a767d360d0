"""Async mode's rules on moto's S3 and DynamoDB: one inference and one label per photo version, in any order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from async_core import AsyncSettings, InferenceFailed
from async_messages import inference_id, parse_notification
from async_testkit import (
    ASYNC_BUCKET,
    REQUEST_PREFIX,
    Clock,
    ScriptedAsyncEndpoint,
    answer_inference,
    create_async_bucket,
    failure_notification,
    parts,
    success_notification,
)
from labeller_aws import S3ModelProfiles
from labeller_core import (
    Labeller,
    Status,
    TransientFault,
    encode_request,
)
from labeller_inputs import ObjectRef, clean_etag
from labeller_testkit import BUCKET, MODEL_ID, TRAINING_BUCKET, Aws, base_answer, photo, vllm_answer

from classification.contract import Taxonomy
from classification.images import normalize
from classification.labeller_environment import AsyncEnvironment
from classification.model_profile import BASE

KEY = "uploads/h-7/pool.jpg"


@pytest.fixture
def s3(aws: Aws) -> Any:
    return create_async_bucket()


def upload(aws: Aws, key: str = KEY, colour: tuple[int, int, int] = (0, 120, 240)) -> ObjectRef:
    response = aws.s3.put_object(Bucket=BUCKET, Key=key, Body=photo(colour))
    return ObjectRef(BUCKET, key, clean_etag(response["ETag"]))


def test_a_photo_is_submitted_once_with_the_exact_real_time_request_and_completes_to_one_label(
    aws: Aws, s3: Any
) -> None:
    # Given an uploaded photo
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, writer = parts(endpoint, clock)
    ref = upload(aws)

    # When the submitter processes its notification
    outcome = submitter.process(ref)

    # Then it is submitted once, under the deterministic id of its version, with the real-time request body
    assert outcome.status is Status.PENDING
    [submission] = endpoint.submissions
    assert submission.inference_id == inference_id(BUCKET, KEY, ref.etag or "", None, MODEL_ID)
    assert (
        submission.input_location == f"s3://{ASYNC_BUCKET}/{REQUEST_PREFIX}{submission.inference_id}/request.json"
    )
    sent = s3.get_object(Bucket=ASYNC_BUCKET, Key=submission.input_location.split("/", 3)[3])["Body"].read()
    expected = encode_request(Taxonomy.load(), normalize(photo((0, 120, 240))).jpeg)
    assert sent == expected
    real_time_bodies: list[bytes] = []

    class Capture:
        def invoke(self, body: bytes) -> bytes:
            real_time_bodies.append(body)
            return json.dumps(vllm_answer("Pool")).encode()

    class NoLabels:
        def get(self, uri: str) -> None:
            return None

        def put_result(self, item: Any, *, final_statuses: Any) -> bool:
            return True

    Labeller(submitter.config, objects=submitter._objects, endpoint=Capture(), labels=NoLabels()).process(ref)  # type: ignore[arg-type]
    assert real_time_bodies == [sent]
    # and the table says PENDING, with the claim naming this inference
    item = aws.item(KEY)
    assert item is not None
    assert (item["status"], item["hotel_id"], item["pending_inference_id"], int(item["pending_attempts"])) == (
        "PENDING",
        "h-7",
        submission.inference_id,
        1,
    )
    assert "label" not in item and item["pending_invoked_at"]

    # When the same notification is delivered again
    # Then nothing is submitted a second time
    again = submitter.process(ref)
    assert again.status is Status.SKIPPED and "already submitted" in (again.reason or "")
    assert len(endpoint.submissions) == 1

    # When SageMaker's answer arrives (through SNS, enveloped)
    note = answer_inference(s3, submission, vllm_answer("Pool", logprob=-0.1))
    completion = writer.handle(parse_notification(json.dumps({"Type": "Notification", "Message": note})))

    # Then one final item holds the label for that version, and no pending_* attribute survives
    assert completion.outcome.status is Status.LABELED
    assert completion.queue_ms == pytest.approx(2500.0)
    item = aws.item(KEY)
    assert item is not None
    assert (item["status"], item["label"], item["hotel_id"], item["model"], item["etag"]) == (
        "LABELED",
        "Pool",
        "h-7",
        MODEL_ID,
        ref.etag,
    )
    assert float(item["confidence"]) == pytest.approx(0.904837, abs=1e-6)
    assert not [name for name in item if name.startswith("pending_")]

    # When the notification is delivered twice, or the upload notification once more
    # Then nothing changes and nothing is submitted
    assert writer.handle(parse_notification(note)).outcome.status is Status.SKIPPED
    assert submitter.process(ref).status is Status.SKIPPED
    assert aws.item(KEY) == item and len(endpoint.submissions) == 1


def test_a_weak_answer_needs_review_as_in_real_time_mode(aws: Aws, s3: Any) -> None:
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, writer = parts(endpoint, clock)
    submitter.process(upload(aws))
    completion = writer.handle(
        parse_notification(answer_inference(s3, endpoint.submissions[0], vllm_answer("Bar", -2.0)))
    )
    assert completion.outcome.status is Status.NEEDS_REVIEW
    item = aws.item(KEY)
    assert item is not None and item["status"] == "NEEDS_REVIEW" and "below 0.6" in item["reason"]


def test_a_base_models_photo_is_submitted_in_the_base_profile_and_its_answer_routed_by_margin(
    aws: Aws, s3: Any
) -> None:
    # Given the async path serving the staged base model (its profile record beside the weights)
    model = f"s3://{TRAINING_BUCKET}/base-models/llava/0123/"
    aws.s3.put_object(Bucket=TRAINING_BUCKET, Key="base-models/llava/0123/model_profile.json", Body=BASE.record())
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, writer = parts(endpoint, clock, model=model, profiles=S3ModelProfiles(aws.s3))

    # When a photo is submitted and answered
    submitter.process(upload(aws))
    [submission] = endpoint.submissions
    sent = s3.get_object(Bucket=ASYNC_BUCKET, Key=submission.input_location.split("/", 3)[3])["Body"].read()
    note = answer_inference(s3, submission, base_answer("Pool", first=0.9, rival="Spa", rival_first=0.05))
    completion = writer.handle(parse_notification(note))

    # Then the request was the base profile's, and the answer waits for review with its margin
    assert sent == encode_request(Taxonomy.load(), normalize(photo((0, 120, 240))).jpeg, BASE)
    assert completion.outcome.status is Status.NEEDS_REVIEW
    item = aws.item(KEY)
    assert item is not None and item["model"] == model and float(item["margin"]) == pytest.approx(0.85)
    assert item["reason"].startswith("every answer of the base model goes to review")


@pytest.mark.parametrize("old_answer_first", [True, False])
def test_a_stale_versions_answer_never_wins(aws: Aws, s3: Any, old_answer_first: bool) -> None:
    # Given version 1 is submitted, then replaced by version 2, which is submitted too
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, writer = parts(endpoint, clock)
    old = upload(aws, colour=(0, 0, 0))
    submitter.process(old)
    new = upload(aws, colour=(240, 240, 240))
    assert old.etag != new.etag
    assert submitter.process(new).status is Status.PENDING
    old_submission, new_submission = endpoint.submissions

    # When both answers arrive, in either order
    old_note = answer_inference(s3, old_submission, vllm_answer("Bar"))
    new_note = answer_inference(s3, new_submission, vllm_answer("Pool"))
    notes = [old_note, new_note] if old_answer_first else [new_note, old_note]
    statuses = [writer.handle(parse_notification(note)).outcome.status for note in notes]

    # Then only the new version's label is recorded
    assert statuses == ([Status.SKIPPED, Status.LABELED] if old_answer_first else [Status.LABELED, Status.SKIPPED])
    item = aws.item(KEY)
    assert item is not None and (item["label"], item["etag"]) == ("Pool", new.etag)


def test_an_older_version_arriving_late_is_not_submitted_over_a_newer_claim(aws: Aws, s3: Any) -> None:
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, _writer = parts(endpoint, clock)
    old = upload(aws, colour=(0, 0, 0))
    new = upload(aws, colour=(240, 240, 240))
    assert submitter.process(new).status is Status.PENDING
    # The old notification reads with If-Match on a replaced object: skipped before any claim.
    assert submitter.process(old).status is Status.SKIPPED
    assert len(endpoint.submissions) == 1


def test_a_bad_input_is_rejected_at_once_and_never_submitted(aws: Aws, s3: Any) -> None:
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, _writer = parts(endpoint, clock)
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/h-7/notes.txt", Body=b"not a photo")
    outcome = submitter.process(ObjectRef(BUCKET, "uploads/h-7/notes.txt"))
    assert outcome.status is Status.REJECTED and endpoint.submissions == []
    item = aws.item("uploads/h-7/notes.txt")
    assert item is not None and item["status"] == "REJECTED" and item["reason"]


def test_failed_inferences_are_resubmitted_then_dead_lettered_and_a_rerun_submits_again(aws: Aws, s3: Any) -> None:
    # Given a submitted photo whose inference keeps failing
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, writer = parts(endpoint, clock, max_attempts=3)
    ref = upload(aws)
    submitter.process(ref)
    first = endpoint.submissions[0]

    # When the error notifications arrive: attempts 2 and 3 are resubmitted with the same request and id
    for attempt in (2, 3):
        completion = writer.handle(parse_notification(failure_notification(first)))
        assert completion.outcome.status is Status.PENDING and f"attempt {attempt} of 3" in (
            completion.outcome.reason or ""
        )
    assert [(s.input_location, s.inference_id) for s in endpoint.submissions] == [
        (first.input_location, first.inference_id)
    ] * 3

    # Then the third failure raises (the message is retried, then dead-lettered) and the claim records it
    with pytest.raises(InferenceFailed, match="failed 3 time"):
        writer.handle(parse_notification(failure_notification(first, "ModelError: CUDA out of memory")))
    item = aws.item(KEY)
    assert item is not None and item["pending_failed_at"] and "CUDA" in item["pending_error"]
    assert item["status"] == "PENDING" and len(endpoint.submissions) == 3

    # When the photo is processed again (a backfill re-run over its prefix)
    # Then the failed claim is taken over and the photo is submitted afresh
    assert submitter.process(ref).status is Status.PENDING
    assert len(endpoint.submissions) == 4
    item = aws.item(KEY)
    assert item is not None and "pending_failed_at" not in item and int(item["pending_attempts"]) == 1


def test_an_answer_outside_the_taxonomy_is_a_model_fault_and_is_asked_again(aws: Aws, s3: Any) -> None:
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, writer = parts(endpoint, clock)
    submitter.process(upload(aws))
    answer = vllm_answer("Pool")
    answer["choices"][0]["message"]["content"] = " this is a photo of a spaceship."
    completion = writer.handle(parse_notification(answer_inference(s3, endpoint.submissions[0], answer)))
    assert completion.outcome.status is Status.PENDING and "outside the taxonomy" in (
        completion.outcome.reason or ""
    )
    assert len(endpoint.submissions) == 2
    item = aws.item(KEY)
    assert item is not None and item["status"] == "PENDING" and "label" not in item


def test_a_failed_submission_frees_its_claim_so_the_retry_submits(aws: Aws, s3: Any) -> None:
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, _writer = parts(endpoint, clock)
    ref = upload(aws)
    endpoint.fail_next = 1
    with pytest.raises(TransientFault):
        submitter.process(ref)
    item = aws.item(KEY)
    assert item is not None and "pending_inference_id" not in item
    assert submitter.process(ref).status is Status.PENDING
    assert len(endpoint.submissions) == 1


def test_an_abandoned_claim_is_taken_over_only_after_its_lease(aws: Aws, s3: Any) -> None:
    # Given a claim whose Lambda died between the claim and the invoke (no pending_invoked_at)
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, _writer = parts(endpoint, clock)
    ref = upload(aws)
    submitter.process(ref)
    aws.dynamodb.update_item(
        TableName="photo-labels",
        Key={"image_uri": {"S": ref.image_uri}},
        UpdateExpression="REMOVE pending_invoked_at",
    )
    # When a redelivery comes within the lease, it leaves the claim to its owner
    clock.advance(60)
    assert submitter.process(ref).status is Status.SKIPPED
    # When it comes after the lease, it submits
    clock.advance(submitter.settings.claim_lease_seconds)
    assert submitter.process(ref).status is Status.PENDING
    assert len(endpoint.submissions) == 2


def test_a_lost_inference_is_resubmitted_once_no_answer_can_still_come(aws: Aws, s3: Any) -> None:
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, _writer = parts(endpoint, clock)
    ref = upload(aws)
    submitter.process(ref)
    clock.advance(submitter.settings.request_ttl_seconds)
    assert submitter.process(ref).status is Status.SKIPPED  # may still be queued
    clock.advance(submitter.settings.stale_after_seconds)
    assert submitter.process(ref).status is Status.PENDING
    assert len(endpoint.submissions) == 2


def test_a_reviewers_decision_is_never_overwritten_by_a_late_answer(aws: Aws, s3: Any) -> None:
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter, writer = parts(endpoint, clock)
    ref = upload(aws)
    submitter.process(ref)
    aws.dynamodb.update_item(
        TableName="photo-labels",
        Key={"image_uri": {"S": ref.image_uri}},
        UpdateExpression="SET review_decision = :d, #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":d": {"S": "reject"}, ":s": {"S": "REVIEW_REJECTED"}},
    )
    completion = writer.handle(
        parse_notification(answer_inference(s3, endpoint.submissions[0], vllm_answer("Pool")))
    )
    assert completion.outcome.status is Status.SKIPPED
    item = aws.item(KEY)
    assert item is not None and item["status"] == "REVIEW_REJECTED" and "label" not in item
    assert submitter.process(ref).status is Status.SKIPPED and len(endpoint.submissions) == 1


def test_reclassify_keeps_the_old_label_while_the_new_models_answer_is_pending(aws: Aws, s3: Any) -> None:
    # Given a photo labelled by model A
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    submitter_a, writer = parts(endpoint, clock, model="model-a")
    ref = upload(aws)
    submitter_a.process(ref)
    writer.handle(parse_notification(answer_inference(s3, endpoint.submissions[0], vllm_answer("Bar"))))

    # When model B reclassifies it
    submitter_b, _ = parts(endpoint, clock, model="model-b")
    assert submitter_b.process(ref).status is Status.SKIPPED  # not without reclassify
    assert submitter_b.process(ref, reclassify=True).status is Status.PENDING

    # Then the table still shows model A's label until B's answer replaces it
    item = aws.item(KEY)
    assert item is not None and (item["status"], item["label"], item["model"]) == ("LABELED", "Bar", "model-a")
    # and model A's late duplicate answer does not overwrite the pending reclassification's result
    assert (
        writer.handle(
            parse_notification(answer_inference(s3, endpoint.submissions[0], vllm_answer("Bar")))
        ).outcome.status
        is Status.SKIPPED
    )
    writer.handle(parse_notification(answer_inference(s3, endpoint.submissions[1], vllm_answer("Pool"))))
    item = aws.item(KEY)
    assert item is not None and (item["label"], item["model"]) == ("Pool", "model-b")


def test_a_notification_for_a_request_that_is_not_ours_is_refused(aws: Aws, s3: Any) -> None:
    endpoint, clock = ScriptedAsyncEndpoint(), Clock()
    _submitter, writer = parts(endpoint, clock)
    stranger = type("S", (), {"input_location": "s3://elsewhere/requests/x/request.json", "inference_id": "x"})()
    with pytest.raises(ValueError, match="is not a request of"):
        writer.handle(parse_notification(success_notification(stranger, "s3://elsewhere/r.out")))  # type: ignore[arg-type]


def test_settings_take_the_limits_the_environment_sets_and_default_the_rest() -> None:
    # Given a label writer's environment setting two of the three limits (each one's range: the contract's tests)
    environment = AsyncEnvironment(request_bucket=ASYNC_BUCKET, max_attempts=5, invocation_timeout_seconds=120)
    # Then the settings carry them, and the request TTL is SageMaker's longest
    settings = AsyncSettings.from_environment(environment)
    assert (settings.max_attempts, settings.invocation_timeout_seconds) == (5, 120)
    assert settings.stale_after_seconds == 21_600 + 120 + 900
