"""The demo's output: its progress lines, one row per upload from the labels table, the accuracy, the printed
table and labels.csv."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_aws.photos import Upload


def say(message: str) -> None:
    """One progress line of the demos, flushed at once: it interleaves with the engine's and trainer's output."""
    print(message, flush=True)


@dataclass(frozen=True)
class Row:
    uri: str
    status: str
    label: str | None
    confidence: float | None
    expected: str | None  # None: a bad file, or a photo of two labels (`mixes`)
    reason: str | None
    mixes: tuple[str, str] | None = None

    @property
    def correct(self) -> bool | None:
        return None if self.expected is None else self.label == self.expected

    @property
    def is_photo(self) -> bool:
        """A real photo (of one label, or mixing two), not a bad file."""
        return self.expected is not None or self.mixes is not None


def result_rows(items: Sequence[Mapping[str, Any]], uploads: Sequence[Upload], bucket: str) -> list[Row]:
    """One row per upload (status NOT-IN-TABLE when the pipeline lost it)."""
    by_uri = {item["image_uri"]: item for item in items}
    rows = []
    for upload in uploads:
        uri = f"s3://{bucket}/{upload.key}"
        item = by_uri.get(uri, {})
        confidence = item.get("confidence")
        rows.append(
            Row(
                uri=uri,
                status=item.get("status", "NOT-IN-TABLE"),
                label=item.get("label"),
                confidence=float(confidence) if confidence is not None else None,
                expected=upload.expected_label,
                reason=item.get("reason"),
                mixes=upload.mixes,
            )
        )
    return rows


def accuracy(rows: Sequence[Row]) -> tuple[int, int]:
    """(correct, total) over the good photos."""
    judged = [row for row in rows if row.expected is not None]
    return sum(bool(row.correct) for row in judged), len(judged)


def format_table(rows: Sequence[Row]) -> str:
    header = ("image", "status", "label", "confidence", "expected", "ok / reason")
    lines = []
    for row in rows:
        verdict = (row.reason or "") if row.expected is None else ("yes" if row.correct else "NO")
        confidence = f"{row.confidence:.3f}" if row.confidence is not None else "-"
        expected = row.expected or (f"{' or '.join(row.mixes)} (mixed)" if row.mixes else "(bad file)")
        lines.append((row.uri, row.status, row.label or "-", confidence, expected, verdict))
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header) - 1)]
    out = []
    for line in [header, *lines]:
        out.append(
            "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]
        )
    out.insert(1, "-" * min(160, len(out[0])))
    return "\n".join(out)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image_uri", "status", "label", "confidence", "expected", "reason"])
        for row in rows:
            writer.writerow([row.uri, row.status, row.label, row.confidence, row.expected, row.reason])
