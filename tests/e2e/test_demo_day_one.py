"""Day one rehearsed offline (scripts/demo_day_one.py): the base model labels, a scripted reviewer decides through
the review API, the decisions train the first fine-tune, which is gated against the base, served, and relabels.

It runs the whole path once (two engine starts, one training, one two-model evaluation: several minutes), on the
session's four-label taxonomy with fewer photos than the demo's defaults.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from classification.contract import Taxonomy
from scripts.demo_day_one import DayOneResult, report, run_day_one

REVIEW_PER_LABEL = 10
UPLOAD_PER_LABEL = 3


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy) -> DayOneResult:
    from model_code.vllm_server import ServingEnvironmentMissing, serving_python

    try:
        serving_python()
    except ServingEnvironmentMissing as error:
        pytest.skip(str(error))
    return run_day_one(
        tmp_path_factory.mktemp("day-one"),
        taxonomy=taxonomy,
        review_per_label=REVIEW_PER_LABEL,
        upload_per_label=UPLOAD_PER_LABEL,
        epochs=12,
        progress=False,
    )


@pytest.mark.slow
def test_the_base_models_answers_all_wait_for_review_and_people_decide_the_first_batch(
    result: DayOneResult, taxonomy: Taxonomy
) -> None:
    photos = [row for row in result.rows_before if row.expected is not None]
    assert len(photos) == UPLOAD_PER_LABEL * len(taxonomy.labels)
    # Uncalibrated, every base-model answer goes to review, with its label and its margin as the reason
    assert all(row.status == "NEEDS_REVIEW" and row.label in taxonomy.labels for row in photos)
    assert all("until a margin threshold is calibrated" in (row.reason or "") for row in photos)
    assert result.reviewed == REVIEW_PER_LABEL * len(taxonomy.labels)


@pytest.mark.slow
def test_the_fine_tune_is_gated_against_the_base_on_held_out_reviewed_photos(result: DayOneResult) -> None:
    gate = result.gate
    assert gate["profile"] == "base" and gate["better"] is True
    assert gate["accuracy_gain"] > 0


@pytest.mark.slow
def test_the_fine_tune_relabels_the_unreviewed_photos_and_beats_the_base_on_them(result: DayOneResult) -> None:
    # The same photos, nobody reviewed them: labelled first by the base, then relabelled by the fine-tune
    assert [row.uri for row in result.rows_after] == [row.uri for row in result.rows_before]
    photos = [row for row in result.rows_after if row.expected is not None]
    assert all(row.status in ("LABELED", "NEEDS_REVIEW") and row.confidence is not None for row in photos)
    bad = [row for row in result.rows_after if row.expected is None]
    assert bad and all(row.status == "REJECTED" for row in bad)  # a rejected file stays rejected
    # The demo's verdict: the fine-tune's accuracy is above the base's on the same new photos
    assert result.improved
    assert result.after[0] > result.before[0]
    assert report(result).startswith(f"accuracy on the {len(photos)} photos nobody reviewed: base model ")


def test_the_cli_refuses_an_empty_first_training_set_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts import demo

    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--day-one", "--review-per-label", "1", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--review-per-label must be >= 2" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
