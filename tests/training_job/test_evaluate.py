"""Evaluation metrics: accuracy, macro-F1, per-class figures and the confusion matrix, on known predictions."""

from __future__ import annotations

import pytest

from classification.contract import Taxonomy
from training_job.evaluate import (
    INVALID,
    Sample,
    check_prompt,
    compute_metrics,
    confusion,
    format_table,
    true_label_of,
)

TAXONOMY = Taxonomy(("Pool", "Room", "Bar", "Lobby"))


def test_metrics_count_invalid_answers_as_wrong_and_skip_absent_labels() -> None:
    # Given 2 Pool photos (one right, one called Room) and 2 Room photos (one right, one invalid answer)
    samples = [
        Sample("Pool", "Pool", " this is a photo of Pool."),
        Sample("Pool", "Room", " this is a photo of Room."),
        Sample("Room", "Room", " this is a photo of Room."),
        Sample("Room", None, " a swimming pool"),
    ]

    # When metrics are computed
    metrics = compute_metrics(samples, TAXONOMY)

    # Then accuracy is 2/4 and per-class figures follow the textbook definitions
    assert metrics["accuracy"] == 0.5
    assert metrics["invalid_answers"] == 1
    pool = {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert metrics["per_class"]["Pool"] == pool
    assert metrics["per_class"]["Room"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert set(metrics["per_class"]) == {"Pool", "Room"}  # Bar and Lobby: no photo, no prediction
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert "accuracy 0.5000" in format_table(metrics)


def test_confusion_matrix_has_an_invalid_column() -> None:
    samples = [Sample("Pool", "Pool", ""), Sample("Pool", "Room", ""), Sample("Room", None, "")]
    assert confusion(samples, ["Pool", "Room"]) == [[1, 1, 0], [0, 0, 1]]
    assert INVALID == "(invalid)"


def test_true_label_comes_from_the_rows_answer() -> None:
    assert true_label_of(TAXONOMY.training_messages("Lobby"), TAXONOMY) == "Lobby"


def test_a_row_built_from_another_taxonomy_is_refused() -> None:
    other = Taxonomy(("Spa", "Gym"))
    check_prompt(TAXONOMY.training_messages("Bar"), TAXONOMY)
    with pytest.raises(ValueError, match="different taxonomy"):
        check_prompt(other.training_messages("Spa"), TAXONOMY)
