"""The labelling job's loop (labelling_job/run.py) on moto with a model that answers by colour: batches, the
checkpoint, resuming after an interruption, and every bad input and fault of docs/scheduled-mode.md."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from jobkit import JOB_ENVIRON, ColourModel, colour_photo, record_pending
from labeller_inputs import ObjectRef, manifest_line
from labeller_testkit import BUCKET, Aws
from window_files import JobSummary

from classification.labeller_environment import LabellerEnvironment
from classification.model_profile import BASE, resolve_profile
from labelling_job.progress import Progress
from labelling_job.run import LabellingRun, build_labeller, read_manifest

# The job's labeller settings, parsed as JobEnvironment parses them at the job's start.
JOB_LABELLER = LabellerEnvironment.from_environment(JOB_ENVIRON)


class Interrupted(BaseException):
    """A Spot interruption: nothing in the job catches it, as nothing survives a terminated instance."""


def labelling_run(model: ColourModel, checkpoint: Path, *, batch_size: int = 2) -> LabellingRun:
    return LabellingRun(
        build_labeller(JOB_LABELLER),
        model,
        Progress(checkpoint, "algo-1"),
        batch_size=batch_size,
        say=lambda _: None,
    )


def test_a_run_labels_every_photo_and_commits_each_batch(aws: Aws, tmp_path: Path) -> None:
    # Given five PENDING photos
    refs = [
        record_pending(aws, f"uploads/h1/{i}-{label}.jpg", colour_photo(label))
        for i, label in enumerate(["Pool", "Bar", "Lobby", "Spa", "Pool"])
    ]
    model = ColourModel()

    # When one host labels them in batches of two
    summary = labelling_run(model, tmp_path).run(refs, JobSummary(host="algo-1", photos=len(refs)))

    # Then each photo has its label from the model, three batches were committed, and the counts say so
    assert [aws.item(r.key)["label"] for r in refs] == ["Pool", "Bar", "Lobby", "Spa", "Pool"]  # type: ignore[index]
    assert {aws.item(r.key)["status"] for r in refs} == {"LABELED"}  # type: ignore[index]
    assert (summary.labeled, summary.inferred, summary.failed, summary.attempts) == (5, 5, 0, 1)
    assert len(list((tmp_path / "done").glob("algo-1-*.json"))) == 3
    assert JobSummary.from_json((tmp_path / "summary-algo-1.json").read_text()) == summary


def test_an_interrupted_run_resumes_inferring_at_most_the_batch_in_flight_again(aws: Aws, tmp_path: Path) -> None:
    # Given eight PENDING photos and a run that is interrupted while recording the third batch of two
    labels = ["Pool", "Bar", "Lobby", "Spa"] * 2
    refs = [record_pending(aws, f"uploads/h2/{i}.jpg", colour_photo(label)) for i, label in enumerate(labels)]
    first_model = ColourModel()
    first = labelling_run(first_model, tmp_path)
    recorded = 0
    original_record = first.labeller.record

    def record_then_die(prepared, response, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal recorded
        if recorded == 5:  # batches 1-2 recorded and committed, one photo of batch 3 recorded
            raise Interrupted
        recorded += 1
        return original_record(prepared, response, **kwargs)

    first.labeller.record = record_then_die  # type: ignore[method-assign]
    with pytest.raises(Interrupted):
        first.run(refs, JobSummary(host="algo-1"))

    # When the restarted job (same checkpoint directory, as SageMaker restores it) runs the same manifest
    second_model = ColourModel()
    summary = labelling_run(second_model, tmp_path).run(refs, JobSummary(host="algo-1"))

    # Then the 4 committed photos are not touched, the one recorded in the interrupted batch is skipped by the
    # table's check, only the batch's unrecorded photo is inferred twice, and no photo is missed
    inferred_twice = len(first_model.answered) + len(second_model.answered) - len(refs)
    assert (summary.resumed, len(second_model.answered), inferred_twice) == (4, 3, 1)
    assert [aws.item(r.key)["label"] for r in refs] == labels  # type: ignore[index]


def test_bad_inputs_and_faults_leave_a_result_or_pending_and_the_job_goes_on(aws: Aws, tmp_path: Path) -> None:
    # Given a window holding: a good photo; a corrupt file the backfill recorded unread; a photo deleted since; a
    # photo overwritten since (both versions listed); a duplicate line; and a photo the model answers wrongly
    good = record_pending(aws, "archive/h3/pool.jpg", colour_photo("Pool"))
    corrupt = record_pending(aws, "archive/h3/corrupt.jpg", colour_photo("Bar")[:500], validate=False)
    deleted = record_pending(aws, "archive/h3/gone.jpg", colour_photo("Lobby"))
    aws.s3.delete_object(Bucket=BUCKET, Key="archive/h3/gone.jpg")
    older = record_pending(aws, "archive/h3/room.jpg", colour_photo("Pool"))
    newer = record_pending(aws, "archive/h3/room.jpg", colour_photo("Bar"))
    flaky = record_pending(aws, "archive/h3/spa.jpg", colour_photo("Spa"))
    shard = tmp_path / "manifest" / "shard-00000.jsonl"
    shard.parent.mkdir()
    lines = [manifest_line(ref) for ref in (good, corrupt, deleted, older, newer, good, flaky)]
    shard.write_text("\n".join([*lines, "{not json"]) + "\n")

    # When the job reads the shard and labels it
    summary = JobSummary(host="algo-1")
    refs = read_manifest([shard], summary, lambda _: None)
    model = ColourModel(outside_taxonomy={"Spa"})
    labelling_run(model, tmp_path / "checkpoints", batch_size=3).run(refs, summary)

    # Then the duplicate and the broken line are dropped, each photo ends as the rules say, the run completes
    assert (summary.photos, summary.duplicates, summary.invalid_lines) == (6, 1, 1)
    statuses = {
        key: aws.item(key)["status"]
        for key in ("archive/h3/pool.jpg", "archive/h3/corrupt.jpg", "archive/h3/gone.jpg", "archive/h3/spa.jpg")
    }
    assert statuses == {
        "archive/h3/pool.jpg": "LABELED",
        "archive/h3/corrupt.jpg": "REJECTED",
        "archive/h3/gone.jpg": "MISSING",
        "archive/h3/spa.jpg": "PENDING",  # an answer outside the taxonomy is a model fault: the next window tries
    }
    assert "unreadable image" in aws.item("archive/h3/corrupt.jpg")["reason"]  # type: ignore[index]
    room = aws.item("archive/h3/room.jpg")
    assert (room["etag"], room["label"]) == (newer.etag, "Bar")  # type: ignore[index]  # the newer version wins
    assert (summary.labeled, summary.rejected, summary.missing, summary.skipped, summary.failed) == (2, 1, 1, 1, 1)
    assert sorted(model.answered) == ["Bar", "Pool", "Spa"]  # the good, the newer room and the flaky photo only


def test_a_photo_that_gained_a_result_meanwhile_is_not_inferred(aws: Aws, tmp_path: Path) -> None:
    # Given a PENDING photo labelled since (an earlier attempt of the window wrote it, the checkpoint did not)
    ref = record_pending(aws, "uploads/h4/bar.jpg", colour_photo("Bar"))
    labelling_run(ColourModel(), tmp_path / "first").run([ref], JobSummary(host="algo-1"))
    model = ColourModel()
    # When a run with an empty checkpoint meets it
    summary = labelling_run(model, tmp_path / "second").run([ref], JobSummary(host="algo-1"))
    # Then the table's record of the final result skips it without a read or an inference
    assert (summary.skipped, model.answered) == (1, [])


def test_a_manifest_for_an_unknown_object_ends_missing_only_when_the_table_knew_it(
    aws: Aws, tmp_path: Path
) -> None:
    # A manifest line naming an object that does not exist and that the table never knew: recorded MISSING once
    # (the real-time rule for an empty table), the job goes on
    ghost = ObjectRef(BUCKET, "uploads/h5/never.jpg", "0" * 32)
    summary = labelling_run(ColourModel(), tmp_path).run([ghost], JobSummary(host="algo-1"))
    assert summary.missing == 1 and aws.item("uploads/h5/never.jpg")["status"] == "MISSING"  # type: ignore[index]


class _BaseAnswers(ColourModel):
    """The colour model answering in the base profile's shape (the bare label), keeping the requests it got."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, object]] = []

    def __call__(self, requests: Sequence[bytes]) -> list[dict[str, Any]]:
        self.requests += [json.loads(request) for request in requests]
        answers = super().__call__(requests)
        for answer, label in zip(answers, self.answered[-len(answers) :], strict=True):
            answer["choices"][0]["message"]["content"] = " " + label
        return answers


def test_a_job_running_a_base_model_asks_in_its_recorded_profile(aws: Aws, tmp_path: Path) -> None:
    # Given PENDING photos and a job whose model directory records the base profile
    refs = [
        record_pending(aws, f"uploads/h2/{i}-{label}.jpg", colour_photo(label))
        for i, label in enumerate(["Bar", "Pool"])
    ]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model_profile.json").write_bytes(BASE.record())
    model = _BaseAnswers()

    # When the job's labeller (built as run.main builds it) labels them
    labeller = build_labeller(JOB_LABELLER, resolve_profile(model_dir))
    run = LabellingRun(labeller, model, Progress(tmp_path / "cp", "algo-1"), batch_size=2, say=lambda _: None)
    run.run(refs, JobSummary(host="algo-1", photos=len(refs)))

    # Then the engine got the base profile's requests (BOS, bare labels), and the answers were read and routed
    # by it: no margin threshold is set, so they wait for review with the model's label
    assert all(
        r["add_special_tokens"] is True and r["structured_outputs"]["choice"][0] == " Hallway"
        for r in model.requests
    )
    items = [aws.item(r.key) for r in refs]
    assert [(i["label"], i["status"]) for i in items if i] == [("Bar", "NEEDS_REVIEW"), ("Pool", "NEEDS_REVIEW")]
    assert all("until a margin threshold is calibrated" in i["reason"] for i in items if i)
