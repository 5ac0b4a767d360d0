"""The evaluation's figures, from per-photo answers: accuracy, evidence histograms, review shares, comparison.

Pure functions over `Sample`s (one per photo: true label, the label answered, the answer, its confidence and
margin), so every figure is testable without a model; training_job/evaluate.py produces the samples and writes
what these return into metrics.json. The review figures apply the Lambda's own routing rule
(classification.model_profile.RoutingRule), so "would go to review" means what production would store.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classification.contract import Prediction, Taxonomy
from classification.model_profile import Evidence, RoutingRule

INVALID = "(invalid)"
HISTOGRAM_BINS = 10


# The thresholds the review-share table tries, for both kinds of evidence.
SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
# Below this many photos of a class, its recall is a guess (95 % interval wider than +-18 points at 50 %):
# docs/day-one.md, "How many hand-labelled photos".
MIN_PHOTOS_PER_CLASS = 30
Z_95 = 1.959964  # the normal quantile of a two-sided 95 % interval


@dataclass(frozen=True)
class Sample:
    true_label: str
    predicted: str | None  # None: the answer named no label
    answer: str
    confidence: float | None = None  # the Lambda's, from logprobs after the grammar's mask (constrained pass only)
    margin: float | None = (
        None  # the answer's probability minus the runner-up label's bound (classification/margin.py)
    )

    def prediction(self) -> Prediction:
        return Prediction(self.predicted or "", self.confidence, self.margin)


def true_label_of(messages: Sequence[dict[str, Any]], taxonomy: Taxonomy) -> str:
    """The label a dataset row teaches: its assistant answer, read with the production parser."""
    for message in messages:
        if message["role"] == "assistant":
            return taxonomy.parse_label(message["content"][0]["text"])
    raise ValueError("dataset row has no assistant message")


def check_prompt(messages: Sequence[dict[str, Any]], taxonomy: Taxonomy) -> None:
    texts = [part.get("text") for m in messages if m["role"] == "user" for part in m["content"]]
    if taxonomy.prompt not in texts:
        raise ValueError(
            "the dataset was built with a different taxonomy or prompt than the one given: evaluate with the "
            "taxonomy file used by build_dataset (--taxonomy)"
        )


def compute_metrics(samples: Sequence[Sample], taxonomy: Taxonomy) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support; invalid answers count as wrong."""
    total = len(samples)
    correct = sum(s.predicted == s.true_label for s in samples)
    invalid = sum(s.predicted is None for s in samples)
    support = Counter(s.true_label for s in samples)
    predicted = Counter(s.predicted for s in samples if s.predicted is not None)
    hits = Counter(s.true_label for s in samples if s.predicted == s.true_label)
    per_class: dict[str, dict[str, float | int]] = {}
    for label in taxonomy.labels:
        if not support[label] and not predicted[label]:
            continue  # absent from the split and never predicted: no evidence either way
        precision = hits[label] / predicted[label] if predicted[label] else 0.0
        recall = hits[label] / support[label] if support[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support[label]}
    macro_f1 = sum(c["f1"] for c in per_class.values()) / len(per_class) if per_class else 0.0
    return {
        "samples": total,
        "accuracy": correct / total if total else 0.0,
        "accuracy_interval_95": wilson_interval(correct, total),
        "macro_f1": macro_f1,
        "invalid_answers": invalid,
        "per_class": per_class,
        "thin_classes": sorted(label for label in per_class if support[label] < MIN_PHOTOS_PER_CLASS),
    }


def wilson_interval(successes: int, trials: int) -> list[float] | None:
    """The 95 % Wilson score interval of a proportion: how far the true accuracy may be from the measured one."""
    if not trials:
        return None
    p = successes / trials
    centre = (p + Z_95**2 / (2 * trials)) / (1 + Z_95**2 / trials)
    half = Z_95 * math.sqrt(p * (1 - p) / trials + Z_95**2 / (4 * trials**2)) / (1 + Z_95**2 / trials)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def confidence_metrics(samples: Sequence[Sample], threshold: float) -> dict[str, Any]:
    """What the Lambda's threshold would do with these answers: how many need review, how right the rest are.

    A photo is below the threshold when its confidence is missing or `< threshold`, exactly as the Lambda decides
    between NEEDS_REVIEW and LABELED.
    """
    confident = [s for s in samples if s.confidence is not None and s.confidence >= threshold]
    below = len(samples) - len(confident)
    return {
        "confidence_threshold": threshold,
        "below_threshold": below,
        "below_threshold_share": below / len(samples) if samples else 0.0,
        "accuracy_at_or_above_threshold": (
            sum(s.predicted == s.true_label for s in confident) / len(confident) if confident else None
        ),
        "confidence": evidence_summary([s.confidence for s in samples]),
    }


def evidence_summary(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, quantiles and a 10-bin histogram over [0, 1] of confidences or margins (missing ones left out).

    bins[i] counts values in [i/10, (i+1)/10), the last bin includes 1.0; a margin below 0 (the runner-up may be
    likelier than the answer) is counted in `below_zero` instead.
    """
    present = sorted(v for v in values if v is not None)
    histogram = [0] * HISTOGRAM_BINS
    for value in present:
        if value >= 0:
            histogram[min(int(value * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
    summary: dict[str, Any] = {"photos": len(present)}
    if present:
        summary.update(
            mean=round(sum(present) / len(present), 4),
            min=round(present[0], 4),
            p10=round(_quantile(present, 0.1), 4),
            median=round(_quantile(present, 0.5), 4),
        )
    summary["histogram"] = {"bins": HISTOGRAM_BINS, "counts": histogram, "below_zero": sum(v < 0 for v in present)}
    return summary


def review_share(samples: Sequence[Sample], rule: RoutingRule) -> dict[str, Any]:
    """What a routing rule would do with these answers: the share sent to review and the accuracy of the rest.

    The rule is the Lambda's own (classification.model_profile.RoutingRule), so the figures are what production
    would store: a photo goes to review exactly when `rule.review_reason` gives a reason.
    """
    labelled = [s for s in samples if rule.review_reason(s.prediction()) is None]
    return {
        "evidence": str(rule.evidence),
        "threshold": rule.threshold,
        "to_review": len(samples) - len(labelled),
        "to_review_share": round((len(samples) - len(labelled)) / len(samples), 4) if samples else 0.0,
        "labelled_accuracy": (
            round(sum(s.predicted == s.true_label for s in labelled) / len(labelled), 4) if labelled else None
        ),
    }


def review_sweep(samples: Sequence[Sample], profile: str) -> dict[str, list[dict[str, Any]]]:
    """`review_share` at every SWEEP threshold, routing on confidence and on margin: the evidence for choosing
    upload.confidence_threshold (a fine-tune) or upload.base_margin_threshold (the base model)."""
    return {
        str(evidence): [review_share(samples, RoutingRule(evidence, t, profile)) for t in SWEEP]
        for evidence in (Evidence.CONFIDENCE, Evidence.MARGIN)
    }


def baseline_comparison(
    samples: Sequence[Sample], baseline: Sequence[Sample], taxonomy: Taxonomy
) -> dict[str, Any]:
    """The served model's figures on the same photos, and whether the evaluated model beats them (the gate)."""
    ours, theirs = compute_metrics(samples, taxonomy), compute_metrics(baseline, taxonomy)
    pairs = zip(samples, baseline, strict=True)
    both = sum(a.predicted == a.true_label and b.predicted == b.true_label for a, b in pairs)
    return {
        "accuracy": theirs["accuracy"],
        "accuracy_interval_95": theirs["accuracy_interval_95"],
        "macro_f1": theirs["macro_f1"],
        "invalid_answers": theirs["invalid_answers"],
        "confidence": evidence_summary([s.confidence for s in baseline]),
        "margin": evidence_summary([s.margin for s in baseline]),
        # Photos only one of the two models got right: the evidence behind the accuracy difference.
        "only_evaluated_right": sum(s.predicted == s.true_label for s in samples) - both,
        "only_baseline_right": sum(s.predicted == s.true_label for s in baseline) - both,
        "accuracy_gain": round(ours["accuracy"] - theirs["accuracy"], 6),
        "better": ours["accuracy"] > theirs["accuracy"],
    }


def _quantile(ordered: Sequence[float], q: float) -> float:
    # Nearest-rank on the sorted values: no interpolation, so the figure is a confidence some photo really had.
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def confusion(samples: Sequence[Sample], labels: Sequence[str]) -> list[list[int]]:
    """Rows: true labels; columns: labels then INVALID."""
    columns = {label: i for i, label in enumerate([*labels, INVALID])}
    rows = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(columns) for _ in labels]
    for s in samples:
        matrix[rows[s.true_label]][columns[s.predicted or INVALID]] += 1
    return matrix


def plot_confusion(
    matrix: list[list[int]], labels: Sequence[str], path: Path, *, title: str, invalid_column: bool = True
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: training containers have no display
    import matplotlib.pyplot as plt

    if not invalid_column:
        matrix = [row[: len(labels)] for row in matrix]
    columns = [*labels, INVALID] if invalid_column else list(labels)
    size = max(4.0, 0.45 * len(columns) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(columns)), labels=columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels=labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value:
                colour = "white" if value > peak / 2 else "black"
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(metrics: dict[str, Any]) -> str:
    per_class = metrics["per_class"]
    width = max([len("label"), *(len(label) for label in per_class)])
    lines = [f"{'label':<{width}}  precision  recall     f1  support"]
    for label, c in per_class.items():
        lines.append(
            f"{label:<{width}}  {c['precision']:>9.3f}  {c['recall']:>6.3f}  {c['f1']:>5.3f}  {c['support']:>7}"
        )
    lines.append(
        f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
        f"invalid answers {metrics['invalid_answers']} of {metrics['samples']}"
    )
    if "confidence_threshold" in metrics:
        confident = metrics["accuracy_at_or_above_threshold"]
        lines.append(
            f"confidence below {metrics['confidence_threshold']}: {metrics['below_threshold']} of "
            f"{metrics['samples']} ({metrics['below_threshold_share']:.1%}, would need review); accuracy of the "
            f"rest {'n/a' if confident is None else format(confident, '.4f')}"
        )
    if "margin" in metrics:
        margin = metrics["margin"]
        lines.append(
            f"margin (answer minus runner-up): median {margin.get('median', 'n/a')}, histogram over [0, 1] "
            f"{margin['histogram']['counts']}, below zero {margin['histogram']['below_zero']}"
        )
    if "routing" in metrics:
        rule = metrics["routing"]
        lines.append(
            f"{metrics['profile']} profile routing ({rule['evidence']} >= {rule['threshold']}): "
            f"{rule['to_review']} of {metrics['samples']} to review; accuracy of the labelled "
            f"{_figure(rule['labelled_accuracy'])}"
        )
    for evidence, rows in metrics.get("review_sweep", {}).items():
        lines.append(f"share to review / accuracy of the labelled, routing on {evidence}:")
        cells = [f"{r['threshold']}: {r['to_review_share']:.0%}/{_figure(r['labelled_accuracy'])}" for r in rows]
        lines.append("  " + "  ".join(cells))
    if metrics.get("thin_classes"):
        lines.append(
            f"fewer than {MIN_PHOTOS_PER_CLASS} photos: {', '.join(metrics['thin_classes'])} (their figures are "
            "guesses; see docs/day-one.md)"
        )
    if "baseline" in metrics:
        base = metrics["baseline"]
        verdict = "better than" if base["better"] else "NOT better than"
        lines.append(
            f"served model ({base['profile']}, {base['model_dir']}) on the same photos: accuracy "
            f"{base['accuracy']:.4f}; this model is {verdict} it ({base['accuracy_gain']:+.4f}: "
            f"{base['only_evaluated_right']} photos only this model got right, {base['only_baseline_right']} only "
            "the served one)"
        )
    if "unconstrained" in metrics:
        free = metrics["unconstrained"]
        lines.append(
            f"unconstrained generation: accuracy {free['accuracy']:.4f}  macro-F1 {free['macro_f1']:.4f}  "
            f"invalid answers {free['invalid_answers']} of {metrics['samples']}"
        )
    return "\n".join(lines)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
