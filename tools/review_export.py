"""Export reviewers' decisions as a manifest the dataset builder reads: the loop from review back to training.

    python -m tools.review_export --table photo-labeler-labels --output reviewed.jsonl [--since 2026-11-01]
        [--corrections-only] [--history-table photo-labeler-review-history]
        [--region eu-west-1] [--endpoint-url http://127.0.0.1:5000]
    python -m training_job.build_dataset photos/ data/next-run --reviewed reviewed.jsonl

Reads the labels table's `by-status` index (REVIEWED: a person confirmed or corrected the label; REVIEW_REJECTED:
not a usable hotel photo) and writes one JSON line per photo with its latest decision, the row of
review_api/export.py (the API's export route for leads writes the same rows): {"image": "s3://bucket/key",
"version_id", "label": <the reviewer's label, null when rejected>, "decision", "model_label", "confidence",
"status_before_review", "reviewed_by", "reviewed_by_sub", "reviewed_at"}. `image` + `label` is the builder's
manifest format and `version_id` makes it read the exact photo version the reviewer saw; the builder leaves
rejected rows out of training. They stay in the export, with the status before review, so an agreement computed
from it (tools.review_report --manifest) is not overstated. `--history-table` adds each photo's `history`: every
decision, override and undo, oldest first (the stack output ReviewHistoryTableName). Credentials, region: boto3's
usual ones.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from review_api.aws import plain
from review_api.export import EXPORT_STATUSES, manifest_row
from stacks.storage import labels_table

STATUS_INDEX = labels_table.BY_STATUS.name
REVIEWED, REVIEW_REJECTED = EXPORT_STATUSES
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def reviewed_items(
    client: Any,
    table: str,
    *,
    statuses: tuple[str, ...] = (REVIEWED, REVIEW_REJECTED),
    progress: TextIO | None = None,
) -> Iterator[dict[str, Any]]:
    """Every item of the given statuses, from the by-status index (paginated); plain Python values."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    read = 0
    for status in statuses:
        params: dict[str, Any] = {
            "TableName": table,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#status = :status",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":status": {"S": status}},
        }
        while True:
            response = client.query(**params)
            for raw in response.get("Items", []):
                item = {name: deserializer.deserialize(value) for name, value in raw.items()}
                yield {k: float(v) if isinstance(v, Decimal) else v for k, v in item.items()}
            read += len(response.get("Items", []))
            if progress is not None:
                print(f"\rread {read:,} reviewed items", end="", file=progress, flush=True)
            if "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    if progress is not None:
        print(file=progress)


def history_by_photo(
    client: Any, table: str, *, progress: TextIO | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every entry of the review history table (a paginated Scan), grouped by photo, oldest first."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    params: dict[str, Any] = {"TableName": table}
    read = 0
    while True:
        response = client.scan(**params)
        for raw in response.get("Items", []):
            entry = plain({name: deserializer.deserialize(value) for name, value in raw.items()})
            grouped[entry["image_uri"]].append(entry)
        read += len(response.get("Items", []))
        if progress is not None:
            print(f"\rread {read:,} history entries", end="", file=progress, flush=True)
        if "LastEvaluatedKey" not in response:
            break
        params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    if progress is not None:
        print(file=progress)
    for entries in grouped.values():
        entries.sort(key=lambda entry: entry["seq"])
    return dict(grouped)


@dataclass
class ExportSummary:
    written: int = 0
    confirmed: int = 0
    corrected: int = 0
    rejected: int = 0
    skipped_before_since: int = 0
    left_out_confirmed: int = 0
    per_label: Counter[str] = field(default_factory=Counter)


def export_manifest(
    items: Iterator[dict[str, Any]],
    out: TextIO,
    *,
    since: str | None = None,
    corrections_only: bool = False,
    history: dict[str, list[dict[str, Any]]] | None = None,
) -> ExportSummary:
    summary = ExportSummary()
    for item in items:
        if since and str(item.get("reviewed_at", "")) < since:
            summary.skipped_before_since += 1
            continue
        row = manifest_row(item)
        if row is None:
            continue  # not a human decision (cannot happen for these statuses; guards a hand-edited item)
        decision = row["decision"]
        if decision == "confirm" and corrections_only:
            summary.left_out_confirmed += 1
            continue
        if decision == "confirm":
            summary.confirmed += 1
        elif decision == "correct":
            summary.corrected += 1
        else:
            summary.rejected += 1
        if history is not None:
            row["history"] = history.get(row["image"], [])
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        summary.written += 1
        if row["label"]:
            summary.per_label[row["label"]] += 1
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.review_export",
        description="Write reviewers' decisions (confirmed, corrected and rejected photos) as a JSON-lines "
        "manifest for build_dataset (which leaves rejected photos out of training).",
    )
    parser.add_argument("--table", required=True, help="the labels table (stack output LabelsTableName)")
    parser.add_argument("--output", required=True, type=Path, help="manifest to write (.jsonl)")
    parser.add_argument("--since", help="only decisions made on or after this date (YYYY-MM-DD)")
    parser.add_argument("--corrections-only", action="store_true", help="leave out confirmed labels")
    parser.add_argument(
        "--history-table", default=None, help="add each photo's history (stack output ReviewHistoryTableName)"
    )
    parser.add_argument("--region", default=None)
    parser.add_argument("--endpoint-url", default=None, help="an emulator (moto) instead of AWS")
    args = parser.parse_args(argv)
    if args.since and not _DATE_RE.match(args.since):
        parser.error(f"--since must be a date YYYY-MM-DD, got {args.since!r}")
    if args.output.suffix != ".jsonl":
        parser.error(f"--output must end in .jsonl (the dataset builder's JSON-lines manifest), got {args.output}")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("dynamodb", region_name=args.region, endpoint_url=args.endpoint_url)
    partial = args.output.with_suffix(".jsonl.partial")
    reading = args.history_table or args.table
    try:
        history = history_by_photo(client, args.history_table, progress=sys.stderr) if args.history_table else None
        reading = args.table
        with partial.open("w", encoding="utf-8") as out:
            summary = export_manifest(
                reviewed_items(client, args.table, progress=sys.stderr),
                out,
                since=args.since,
                corrections_only=args.corrections_only,
                history=history,
            )
    except (BotoCoreError, ClientError) as error:
        partial.unlink(missing_ok=True)
        print(f"error: cannot read table {reading}: {error}", file=sys.stderr)
        return 1
    partial.replace(args.output)  # a half-written manifest never looks like a finished one
    print(
        f"wrote {summary.written} photos to {args.output} ({summary.corrected} corrected, "
        f"{summary.confirmed} confirmed, {summary.rejected} rejected: label null, never trained)"
        + (f"; {summary.left_out_confirmed} confirmed left out" if args.corrections_only else "")
        + (f"; {summary.skipped_before_since} decided before {args.since}" if args.since else "")
    )
    for label, count in summary.per_label.most_common():
        print(f"  {label}: {count}")
    if summary.written == 0:
        print("nothing to export: no decided photo yet", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
