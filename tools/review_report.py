"""How often the model agrees with reviewers, per label and per confidence bucket, and the threshold that would
have met a target accuracy for automatic labels.

    python -m tools.review_report --table photo-labeler-labels [--target-accuracy 0.95] [--json]
        [--history-table photo-labeler-review-history]
    python -m tools.review_report --manifest reviewed-all.jsonl      # offline, from review_export's columns

Agreement = the reviewer confirmed the model's label. A correction and a rejection (not a usable hotel photo) are
both disagreements: an automatic label would have been wrong. Calibration compares each bucket's mean confidence
with its agreement. The threshold is the lowest confidence t such that the reviewed photos with confidence >= t
agree at least `--target-accuracy`; coverage is the share of reviewed photos at or above t.

Each photo counts once, with its latest decision (an override replaces the decision it overrode; an undone one is
gone). With `--history-table` (or a manifest exported with it) the report adds what the history shows: decisions,
overrides and undos, and on how many photos a lead's override disagreed with the first reviewer.

Limit (printed with the report): reviewers mostly see NEEDS_REVIEW photos, i.e. those BELOW the upload threshold;
photos above it are measured only when someone reviews LABELED photos too (the page's status filter). A threshold
above the current one therefore rests on few samples unless LABELED photos are audited; buckets with fewer than
MIN_SAMPLES photos are marked.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BUCKETS = 10  # confidence buckets of 0.1
MIN_SAMPLES = 30  # below this a bucket's agreement is too noisy to act on (±18 points at 95 % for p = 0.5)
DEFAULT_TARGET_ACCURACY = 0.95


@dataclass(frozen=True)
class Reviewed:
    model_label: str
    confidence: float | None
    agreed: bool
    decision: str  # confirm | correct | reject
    status_before_review: str | None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Reviewed | None:
        """A reviewed item of the table (or a review_export row); None when it has no model label to judge."""
        decision = item.get("review_decision") or item.get("decision")
        model_label = item.get("label") if "review_decision" in item else item.get("model_label")
        if decision not in ("confirm", "correct", "reject") or not model_label:
            return None
        confidence = item.get("confidence")
        human = item.get("human_label") if "review_decision" in item else item.get("label")
        agreed = decision == "confirm" or (decision == "correct" and human == model_label)
        return cls(
            model_label=str(model_label),
            confidence=float(confidence) if confidence is not None else None,
            agreed=agreed,
            decision=str(decision),
            status_before_review=item.get("status_before_review"),
        )


@dataclass
class Row:
    name: str
    reviewed: int
    agreed: int
    corrected: int
    rejected: int
    mean_confidence: float | None

    @property
    def agreement(self) -> float:
        return self.agreed / self.reviewed if self.reviewed else math.nan

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "agreement": None if math.isnan(self.agreement) else round(self.agreement, 4)}


def _row(name: str, reviewed: list[Reviewed]) -> Row:
    confidences = [r.confidence for r in reviewed if r.confidence is not None]
    return Row(
        name=name,
        reviewed=len(reviewed),
        agreed=sum(r.agreed for r in reviewed),
        corrected=sum(r.decision == "correct" and not r.agreed for r in reviewed),
        rejected=sum(r.decision == "reject" for r in reviewed),
        mean_confidence=sum(confidences) / len(confidences) if confidences else None,
    )


def per_label(reviewed: Iterable[Reviewed]) -> list[Row]:
    groups: dict[str, list[Reviewed]] = defaultdict(list)
    for item in reviewed:
        groups[item.model_label].append(item)
    return sorted(
        (_row(label, items) for label, items in groups.items()), key=lambda row: (row.agreement, row.name)
    )


def per_bucket(reviewed: Iterable[Reviewed]) -> list[Row]:
    groups: dict[int, list[Reviewed]] = defaultdict(list)
    missing: list[Reviewed] = []
    for item in reviewed:
        if item.confidence is None:
            missing.append(item)
        else:
            groups[min(int(item.confidence * BUCKETS), BUCKETS - 1)].append(item)
    rows = [_row(f"{b / BUCKETS:.1f}-{(b + 1) / BUCKETS:.1f}", groups[b]) for b in range(BUCKETS) if groups[b]]
    if missing:
        rows.append(_row("no confidence", missing))
    return rows


@dataclass(frozen=True)
class Threshold:
    target_accuracy: float
    threshold: float | None  # None: no threshold reaches the target
    accuracy: float | None
    coverage: float | None  # share of reviewed photos with a confidence at or above the threshold
    samples: int


def threshold_for(reviewed: Iterable[Reviewed], target_accuracy: float) -> Threshold:
    """The lowest confidence t whose reviewed photos at or above t agree >= target (a suffix scan, O(n log n))."""
    scored = sorted((r for r in reviewed if r.confidence is not None), key=lambda r: r.confidence, reverse=True)
    total = len(scored)
    best: Threshold = Threshold(target_accuracy, None, None, None, 0)
    agreed = 0
    for count, item in enumerate(scored, start=1):
        agreed += item.agreed
        next_is_same = count < total and scored[count].confidence == item.confidence
        if next_is_same:
            continue  # a threshold keeps every photo of the same confidence together
        if agreed / count >= target_accuracy:
            best = Threshold(target_accuracy, item.confidence, agreed / count, count / total, count)
    return best


def history_summary(history: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, Any]:
    """What the review history shows: changes by kind, and overrides that disagreed with the decision they
    replaced (a second opinion: how often two reviewers differ)."""
    actions: dict[str, int] = defaultdict(int)
    overridden = disagreed = 0
    for entries in history.values():
        for entry in entries:
            actions[str(entry.get("action"))] += 1
            if entry.get("action") == "override":
                overridden += 1
                replaced = entry.get("replaced") or {}
                if (replaced.get("decision"), replaced.get("human_label")) != (
                    entry.get("decision"),
                    entry.get("human_label"),
                ):
                    disagreed += 1
    return {
        "photos": len(history),
        "decisions": actions["decide"],
        "overrides": overridden,
        "undos": actions["undo"],
        "overrides_that_disagreed": disagreed,
    }


def report(
    items: Iterable[Mapping[str, Any]],
    target_accuracy: float,
    history: Mapping[str, list[Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    items = list(items)
    if history is None and any("history" in item for item in items):
        history = {str(item.get("image")): item["history"] for item in items if "history" in item}
    reviewed = [r for r in (Reviewed.from_item(item) for item in items) if r is not None]
    below = sum(r.status_before_review == "NEEDS_REVIEW" for r in reviewed)
    extra = {"history": history_summary(history)} if history is not None else {}
    return extra | {
        "reviewed": len(reviewed),
        "agreement": _row("all", reviewed).to_json(),
        "per_label": [row.to_json() for row in per_label(reviewed)],
        "per_confidence_bucket": [row.to_json() for row in per_bucket(reviewed)],
        "threshold": asdict(threshold_for(reviewed, target_accuracy)),
        "from_needs_review": below,
        "from_labeled": sum(r.status_before_review == "LABELED" for r in reviewed),
    }


def format_report(data: Mapping[str, Any]) -> str:
    def table(title: str, rows: list[dict[str, Any]]) -> list[str]:
        width = max([len(title), *(len(row["name"]) for row in rows)])
        lines = [f"{title:<{width}}  reviewed  agree  corrected  rejected  mean conf"]
        for row in rows:
            agreement = "  n/a" if row["agreement"] is None else f"{row['agreement'] * 100:5.1f}%"
            mean = "   -" if row["mean_confidence"] is None else f"{row['mean_confidence']:.3f}"
            few = "  (few)" if row["reviewed"] < MIN_SAMPLES else ""
            lines.append(
                f"{row['name']:<{width}}  {row['reviewed']:>8}  {agreement}  {row['corrected']:>9}  "
                f"{row['rejected']:>8}  {mean:>9}{few}"
            )
        return lines

    if not data["reviewed"]:
        return "No reviewed photos yet: decisions appear here once reviewers confirm, correct or reject photos."
    overall = data["agreement"]
    lines = [
        f"{data['reviewed']} reviewed photos; the model agreed with reviewers on "
        f"{overall['agreement'] * 100:.1f}% "
        f"({overall['corrected']} corrected, {overall['rejected']} rejected).",
        "",
        *table("model label", data["per_label"]),
        "",
        *table("confidence", data["per_confidence_bucket"]),
        "",
    ]
    threshold = data["threshold"]
    target = threshold["target_accuracy"] * 100
    if threshold["threshold"] is None:
        lines.append(f"No confidence threshold reaches {target:.1f}% agreement on the reviewed photos.")
    else:
        lines.append(
            f"Threshold for {target:.1f}% accuracy: confidence >= {threshold['threshold']:.3f} "
            f"(measured {threshold['accuracy'] * 100:.1f}% on {threshold['samples']} photos, "
            f"{threshold['coverage'] * 100:.1f}% of the reviewed ones)."
        )
    lines.append(
        f"Caveat: {data['from_needs_review']} of the reviewed photos were below the upload threshold "
        "(NEEDS_REVIEW) "
        f"and {data['from_labeled']} above it (LABELED, audited): agreement above the current threshold rests on "
        "the audited ones only. Buckets marked (few) have under "
        f"{MIN_SAMPLES} photos."
    )
    if "history" in data:
        history = data["history"]
        lines.append(
            f"History: {history['decisions']} decisions, {history['overrides']} overrides by leads "
            f"({history['overrides_that_disagreed']} changed the label or verdict), {history['undos']} undos, "
            f"on {history['photos']} photos."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.review_report",
        description="Model agreement with reviewers per label and confidence bucket, and the threshold for a "
        "target accuracy.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", help="the labels table (stack output LabelsTableName)")
    source.add_argument("--manifest", type=Path, help="a review_export manifest instead of the table")
    parser.add_argument("--target-accuracy", type=float, default=DEFAULT_TARGET_ACCURACY)
    parser.add_argument(
        "--history-table", default=None, help="also summarise the review history (ReviewHistoryTableName)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--region", default=None)
    parser.add_argument("--endpoint-url", default=None, help="an emulator (moto) instead of AWS")
    args = parser.parse_args(argv)
    if not 0.0 < args.target_accuracy <= 1.0:
        parser.error(f"--target-accuracy must be in (0, 1], got {args.target_accuracy}")
    if args.manifest:
        try:
            items = [json.loads(line) for line in args.manifest.read_text(encoding="utf-8").splitlines() if line]
        except (OSError, json.JSONDecodeError) as error:
            print(f"error: cannot read {args.manifest}: {error}", file=sys.stderr)
            return 1
    else:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        from tools.review_export import reviewed_items

        client = boto3.client("dynamodb", region_name=args.region, endpoint_url=args.endpoint_url)
        try:
            items = list(reviewed_items(client, args.table, progress=sys.stderr))
        except (BotoCoreError, ClientError) as error:
            print(f"error: cannot read table {args.table}: {error}", file=sys.stderr)
            return 1
    history = None
    if args.history_table:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        from tools.review_export import history_by_photo

        client = boto3.client("dynamodb", region_name=args.region, endpoint_url=args.endpoint_url)
        try:
            history = history_by_photo(client, args.history_table, progress=sys.stderr)
        except (BotoCoreError, ClientError) as error:
            print(f"error: cannot read table {args.history_table}: {error}", file=sys.stderr)
            return 1
    data = report(items, args.target_accuracy, history)
    print(json.dumps(data, indent=2) if args.json else format_report(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
