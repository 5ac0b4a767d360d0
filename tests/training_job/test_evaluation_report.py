"""The evaluation's figures on known answers: review shares under the Lambda's rule, evidence, the comparison."""

from __future__ import annotations

import pytest

from classification.contract import Taxonomy
from classification.model_profile import BASE, FINE_TUNE, Evidence, RoutingRule
from training_job.evaluation_report import (
    MIN_PHOTOS_PER_CLASS,
    SWEEP,
    Sample,
    baseline_comparison,
    compute_metrics,
    evidence_summary,
    format_table,
    review_share,
    review_sweep,
    wilson_interval,
)

TAXONOMY = Taxonomy(("Pool", "Room", "Bar", "Lobby"))
# Four base-model answers: sure and right, sure and wrong, unsure and right, no logprobs
BASE_ANSWERS = [
    Sample("Pool", "Pool", " Pool", confidence=0.9, margin=0.85),
    Sample("Room", "Bar", " Bar", confidence=0.8, margin=0.6),
    Sample("Bar", "Bar", " Bar", confidence=0.4, margin=0.05),
    Sample("Lobby", "Lobby", " Lobby", confidence=None, margin=None),
]


def test_the_review_share_is_what_the_lambdas_own_rule_would_send_to_review() -> None:
    # Given the base profile's rule at a margin of 0.5
    rule = BASE.routing_rule(confidence_threshold=0.8, margin_threshold=0.5)

    # Then the unsure answer and the one without logprobs go to review; half of the rest is right
    assert review_share(BASE_ANSWERS, rule) == {
        "evidence": "margin",
        "threshold": 0.5,
        "to_review": 2,
        "to_review_share": 0.5,
        "labelled_accuracy": 0.5,
    }
    # and, uncalibrated, everything does
    uncalibrated = BASE.routing_rule(confidence_threshold=0.8, margin_threshold=None)
    assert review_share(BASE_ANSWERS, uncalibrated)["to_review"] == 4


def test_the_sweep_tries_every_threshold_on_both_kinds_of_evidence() -> None:
    sweep = review_sweep(BASE_ANSWERS, "base")
    assert set(sweep) == {"confidence", "margin"}
    assert [row["threshold"] for row in sweep["margin"]] == list(SWEEP)
    by_threshold = {row["threshold"]: row for row in sweep["margin"]}
    assert by_threshold[0.1]["to_review"] == 2 and by_threshold[0.1]["labelled_accuracy"] == 0.5
    assert by_threshold[0.7]["to_review"] == 3 and by_threshold[0.7]["labelled_accuracy"] == 1.0
    assert by_threshold[0.9]["labelled_accuracy"] is None  # nothing clears it
    confidence = {row["threshold"]: row for row in sweep["confidence"]}
    assert confidence[0.8] == review_share(BASE_ANSWERS, RoutingRule(Evidence.CONFIDENCE, 0.8, "base"))


def test_evidence_histograms_count_negative_margins_apart() -> None:
    summary = evidence_summary([0.95, 0.05, -0.2, None, 1.0])
    assert summary["photos"] == 4
    assert summary["histogram"] == {"bins": 10, "counts": [1, 0, 0, 0, 0, 0, 0, 0, 0, 2], "below_zero": 1}
    assert summary["min"] == -0.2


def test_the_comparison_with_the_served_model_counts_the_photos_behind_the_difference() -> None:
    # Given a fine-tune that fixes two of the base model's mistakes and makes one of its own
    truth = ["Pool", "Room", "Bar", "Lobby", "Pool"]
    base = ["Pool", "Bar", "Room", "Lobby", "Pool"]
    tuned = ["Pool", "Room", "Bar", "Lobby", "Room"]
    samples = [Sample(t, p, "") for t, p in zip(truth, tuned, strict=True)]
    baseline = [Sample(t, p, "") for t, p in zip(truth, base, strict=True)]

    comparison = baseline_comparison(samples, baseline, TAXONOMY)

    assert (comparison["accuracy"], comparison["accuracy_gain"], comparison["better"]) == (0.6, 0.2, True)
    assert (comparison["only_evaluated_right"], comparison["only_baseline_right"]) == (2, 1)
    # equal accuracy is not better: the gate needs a strict improvement
    assert baseline_comparison(baseline, baseline, TAXONOMY)["better"] is False


def test_accuracy_carries_its_interval_and_thin_classes_are_named() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(780 * 3 // 4, 780)  # 30 photos x 26 classes at 75 %
    assert high - low == pytest.approx(0.06, abs=0.005)
    samples = [Sample("Pool", "Pool", "")] * MIN_PHOTOS_PER_CLASS + [Sample("Room", "Room", "")] * 3
    metrics = compute_metrics(samples, TAXONOMY)
    assert metrics["thin_classes"] == ["Room"]
    assert metrics["accuracy_interval_95"][1] == 1.0


def test_the_printed_report_names_the_profile_rule_the_sweep_and_the_comparison() -> None:
    metrics = compute_metrics(BASE_ANSWERS, TAXONOMY)
    metrics.update(
        profile="base",
        margin=evidence_summary([s.margin for s in BASE_ANSWERS]),
        routing=review_share(BASE_ANSWERS, BASE.routing_rule(confidence_threshold=0.8, margin_threshold=0.5)),
        review_sweep=review_sweep(BASE_ANSWERS, "base"),
        baseline={
            "profile": FINE_TUNE.name,
            "model_dir": "served",
            **baseline_comparison(BASE_ANSWERS, BASE_ANSWERS, TAXONOMY),
        },
    )
    text = format_table(metrics)
    assert "base profile routing (margin >= 0.5): 2 of 4 to review; accuracy of the labelled 0.500" in text
    assert "routing on margin:" in text and "0.5: 50%/0.500" in text
    assert "NOT better than it (+0.0000" in text
    assert f"fewer than {MIN_PHOTOS_PER_CLASS} photos: Bar, Lobby, Pool, Room" in text
