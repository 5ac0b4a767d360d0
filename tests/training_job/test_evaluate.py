"""Evaluation: metrics on known predictions, the gate, and the production (constrained) path of a trained model."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from training_testkit import COLOURS, colour_photo

from classification.contract import Taxonomy
from training_job import evaluate as evaluation
from training_job.evaluate import (
    INVALID,
    Sample,
    check_prompt,
    compute_metrics,
    confidence_metrics,
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


def test_confidence_below_the_threshold_is_counted_as_the_lambda_decides_needs_review() -> None:
    # Given four answers: confident and right, exactly at the threshold, just below it, and without logprobs
    samples = [
        Sample("Pool", "Pool", "", 0.99),
        Sample("Room", "Bar", "", 0.8),
        Sample("Room", "Room", "", 0.7999),
        Sample("Bar", "Bar", "", None),
    ]

    # When the production threshold is applied
    figures = confidence_metrics(samples, 0.8)

    # Then the Lambda's rule holds (LABELED at >= threshold; below it or no confidence: NEEDS_REVIEW)
    assert figures["confidence_threshold"] == 0.8
    assert figures["below_threshold"] == 2
    assert figures["below_threshold_share"] == 0.5
    assert figures["accuracy_at_or_above_threshold"] == 0.5  # of the two photos labelled automatically
    assert figures["confidence"]["photos"] == 3
    assert figures["confidence"]["histogram"]["counts"] == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert figures["confidence"]["median"] == 0.8
    assert confidence_metrics(samples[:1], 1.0)["accuracy_at_or_above_threshold"] is None  # nobody clears it


def _fake_evaluate(constrained: float, unconstrained: float) -> Any:
    def fake(*_: Any, confidence_threshold: float, **__: Any) -> dict[str, Any]:
        return {
            "samples": 10,
            "accuracy": constrained,
            "macro_f1": constrained,
            "per_class": {},
            "invalid_answers": 3,
            "confidence_threshold": confidence_threshold,
            "below_threshold": 1,
            "below_threshold_share": 0.1,
            "accuracy_at_or_above_threshold": 1.0,
            "unconstrained": {"accuracy": unconstrained, "macro_f1": unconstrained, "invalid_answers": 3},
        }

    return fake


@pytest.mark.parametrize(
    ("constrained", "unconstrained", "expected"),
    [(0.95, 0.1, 0), (0.5, 0.99, evaluation.EXIT_BELOW_BAR)],
    ids=["constrained-clears-the-bar", "only-free-generation-clears-it"],
)
def test_min_accuracy_gates_on_the_constrained_accuracy(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    constrained: float,
    unconstrained: float,
    expected: int,
) -> None:
    # Given an evaluation whose production-path and free-generation accuracies disagree
    monkeypatch.setattr(evaluation, "evaluate", _fake_evaluate(constrained, unconstrained))
    args = ["--model-dir", "m", "--dataset", str(tmp_path), "--output-dir", str(tmp_path / "out")]

    # When the CLI gates at 0.9
    code = evaluation.main([*args, "--min-accuracy", "0.9", "--confidence-threshold", "0.7"])

    # Then only the constrained figure decides, and both are printed for the metric definitions
    assert code == expected
    out = capsys.readouterr().out
    assert f"eval_accuracy={constrained}" in out
    assert f"eval_unconstrained_accuracy={unconstrained}" in out
    assert "eval_below_threshold_share=0.1" in out


@pytest.mark.parametrize("threshold", ["1.5", "-0.1"])
def test_a_confidence_threshold_outside_zero_to_one_is_refused(
    threshold: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as error:
        evaluation.main(
            ["--model-dir", "m", "--dataset", "d", "--output-dir", "o", "--confidence-threshold", threshold]
        )
    assert error.value.code == 2
    assert "--confidence-threshold is a probability" in capsys.readouterr().err


@pytest.mark.slow
def test_the_trained_model_is_evaluated_through_the_production_request_and_parser(
    trained_model: Path, dataset_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # When the trained tiny model is evaluated with a low threshold, against the untrained model it started from
    # served as the base model (the day-one comparison)
    args = ["--model-dir", str(trained_model), "--dataset", str(dataset_dir), "--output-dir", str(tmp_path)]
    baseline = ["--baseline-model-dir", str(tiny_model_dir), "--baseline-profile", "base"]
    code = evaluation.main([*args, "--confidence-threshold", "0.01", "--no-progress", *baseline])

    # Then both passes are reported: constrained at the top level (what the gate reads), free generation beside it
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert code == 0
    assert metrics["accuracy"] >= 0.9 and metrics["unconstrained"]["accuracy"] >= 0.9
    assert metrics["invalid_answers"] == metrics["unconstrained"]["invalid_answers"] == 0
    assert (metrics["confidence_threshold"], metrics["below_threshold_share"]) == (0.01, 0.0)
    assert metrics["accuracy_at_or_above_threshold"] == metrics["accuracy"]
    assert "after the choice grammar's mask" in metrics["confidence_definition"]
    assert metrics["constrained_invalid_answers"] == 0
    assert sum(metrics["confidence"]["histogram"]["counts"]) == metrics["samples"] == 24
    # Every photo's answer is one of the request's choices verbatim, with the probability the Lambda would store
    taxonomy = Taxonomy.load(dataset_dir / "taxonomy.json")
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 24
    for record in predictions:
        assert record["answer"] in taxonomy.choices
        assert taxonomy.parse_label(record["answer"]) == record["predicted"]
        assert 0.01 <= record["confidence"] <= 1 and record["below_threshold"] is False
    assert metrics["confidence"]["mean"] == pytest.approx(sum(r["confidence"] for r in predictions) / 24, abs=1e-4)
    # Margins come with every answer (the fine-tune's top_logprobs 1 bounds them), and the review table covers
    # both kinds of evidence at every threshold
    assert all(-1 <= record["margin"] <= record["confidence"] for record in predictions)
    assert metrics["profile"] == "fine-tune" and metrics["routing"]["evidence"] == "confidence"
    assert len(metrics["review_sweep"]["margin"]) == len(metrics["review_sweep"]["confidence"]) == 10
    # The same photos answered by the untrained base: far worse, so the fine-tune passes the served-model gate
    base = metrics["baseline"]
    assert (base["profile"], base["model_dir"]) == ("base", str(tiny_model_dir))
    assert base["better"] is True and base["accuracy"] < metrics["accuracy"]
    assert base["accuracy_gain"] == pytest.approx(metrics["accuracy"] - base["accuracy"])
    assert all(record["baseline_predicted"] in taxonomy.labels for record in predictions)


@pytest.mark.slow
def test_choices_without_the_leading_space_are_far_less_likely_on_the_trained_model(
    trained_model: Path, taxonomy: Taxonomy
) -> None:
    # Given the trained model behind the endpoint's decoding, and a fresh photo of every label
    from training_job.constrained import ConstrainedDecoder

    decoder = ConstrainedDecoder(trained_model, device="cpu")
    rng = np.random.default_rng(7)
    for label in COLOURS:
        buffer = io.BytesIO()
        colour_photo(label, rng).save(buffer, format="JPEG", quality=90)
        request = taxonomy.build_request(buffer.getvalue())

        # When it is asked with the taxonomy's choices, and with the same sentences missing the space
        trained = decoder.answer(request)
        stripped_choices = [choice.lstrip() for choice in taxonomy.choices]
        stripped = decoder.answer(request | {"structured_outputs": {"choice": stripped_choices}})

        # Then the trained spelling is the one the model would write on its own: the stripped one starts with a
        # token the model never learnt to emit, orders of magnitude less likely under the whole vocabulary (the
        # grammar would force it, and the returned logprobs, renormalised after the mask, would not show it)
        assert taxonomy.parse_label(trained.content) == label
        trained_logprob = sum(t.full_logprob for t in trained.tokens)
        stripped_logprob = sum(t.full_logprob for t in stripped.tokens)
        assert trained_logprob - stripped_logprob > math.log(1000)
