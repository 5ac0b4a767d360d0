"""The offline demo's path on the session's model: the real vLLM engine -> moto S3/SQS/DynamoDB -> the real Lambda.

The session's trained tiny model and its engine (tests/conftest.py `trained_model`, `vllm_server`) stand in for the
demo's steps 1-2, which `make demo` runs in full; this reuses them to save a training run and an engine start.
Every upload must reach its terminal status in the labels table (good photos LABELED or NEEDS_REVIEW with a
taxonomy label, bad files REJECTED with the reason), and nothing may be left in the queue or its DLQ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from training_testkit import COLOURS

from classification.contract import Taxonomy
from scripts import demo
from scripts.demo_report import accuracy, format_table


@pytest.fixture(scope="module", params=["realtime", "async", "scheduled"])
def result(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy, vllm_server: Any
) -> demo.DemoResult:
    # Every endpoint mode on the same model: async goes through tools/async_worker.py playing SageMaker, scheduled
    # records PENDING and runs one window whose labelling job loads the model in vLLM's offline engine.
    return demo.run_demo(
        tmp_path_factory.mktemp("demo"),
        taxonomy=taxonomy,
        train_per_label=0,
        upload_per_label=2,
        epochs=0,
        progress=False,
        served=demo.ServedModel(vllm_server.model_dir, vllm_server.base_url, COLOURS),
        mode=request.param,
    )


@pytest.mark.slow
def test_every_upload_reaches_its_terminal_status(result: demo.DemoResult, taxonomy: Taxonomy) -> None:
    good = [row for row in result.rows if row.expected is not None]
    bad = {row.uri.rsplit("/", 1)[1]: row for row in result.rows if not row.is_photo}

    # Good photos are labelled with a label of the taxonomy and a probability
    assert len(good) == 2 * len(taxonomy.labels)
    for row in good:
        assert row.status in ("LABELED", "NEEDS_REVIEW"), row
        assert row.label in taxonomy.labels
        assert row.confidence is not None and 0 < row.confidence <= 1
        if row.status == "NEEDS_REVIEW":
            assert row.reason is not None and "below" in row.reason

    # Bad files are rejected with a reason a person can act on
    assert {name: row.status for name, row in bad.items()} == dict.fromkeys(
        ("truncated.jpg", "empty.jpg", "notes.txt", "brochure.pdf"), "REJECTED"
    )
    assert "truncated" in (bad["truncated.jpg"].reason or "")
    assert bad["empty.jpg"].reason == "empty file (0 bytes)"
    assert "not an image" in (bad["notes.txt"].reason or "")
    assert "not an image" in (bad["brochure.pdf"].reason or "")


@pytest.mark.slow
def test_the_queue_is_drained_without_retries_or_dead_letters(result: demo.DemoResult) -> None:
    assert result.queue_left == 0
    assert result.dead_letters == 0
    assert result.drain.failed_records == 0
    endpoint = result.drain.endpoint
    if endpoint is None:
        # One message per upload plus S3's s3:TestEvent, which the handler consumes without a table write.
        assert result.drain.messages == len(result.rows) + 1
    else:
        # Async: exactly one inference per good photo (bad files are rejected before submission), none repeated.
        good = sum(row.is_photo for row in result.rows)
        assert (endpoint.submissions, endpoint.inferences, endpoint.duplicate_submissions) == (good, good, 0)


@pytest.mark.slow
def test_the_demo_ends_with_photos_the_model_is_unsure_of_for_the_review_page(result: demo.DemoResult) -> None:
    # Photos mixing two labels' colours: a model trained on one colour per label cannot be sure of them, so
    # `make demo` leaves the review page work (it ended with nothing to review before).
    mixed = [row for row in result.rows if row.mixes is not None]
    assert len(mixed) == demo.UNSURE_PHOTOS
    assert all(row.status in ("LABELED", "NEEDS_REVIEW") and row.label for row in mixed), format_table(result.rows)
    unsure = [row for row in mixed if row.status == "NEEDS_REVIEW"]
    assert len(unsure) >= demo.UNSURE_PHOTOS // 2, format_table(result.rows)


@pytest.mark.slow
def test_the_trained_model_recognises_most_new_photos(result: demo.DemoResult) -> None:
    # A learnability check of the whole path (photo -> Lambda normalisation -> request -> engine -> parser), with
    # a bar loose enough for a short CPU run: chance is 1 in 4.
    correct, total = accuracy(result.rows)
    assert correct / total >= 0.75, format_table(result.rows)


def test_demo_cli_refuses_bad_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv, message in (
        (["--labels", "1"], "--labels must be within 2..26"),
        (["--epochs", "0"], "must be >= 1"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            demo.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    (tmp_path / "something").write_text("x")
    with pytest.raises(SystemExit):
        demo.main(["--output-dir", str(tmp_path)])
    assert "is not empty" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("result", ["scheduled"], indirect=True)  # only endpoint.mode scheduled runs a window
def test_a_scheduled_window_labels_every_pending_photo_once(result: demo.DemoResult) -> None:
    assert result.drain.window is not None
    good = sum(row.is_photo for row in result.rows)  # photos of one label and photos mixing two
    window = result.drain.window
    # Every good photo was inferred exactly once by the window's job and got a final label; nothing failed
    assert (window["photos"], window["inferred"], window["failed"], window["hosts"]) == (good, good, 0, 1)
    assert window["labeled"] + window["needs_review"] == good
    assert not [row for row in result.rows if row.status == "PENDING"]
