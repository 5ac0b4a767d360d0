"""Build the fine-tuning dataset: labelled photos -> a `datasets.DatasetDict` with `train` and `validation`.

    python -m training_job.build_dataset SOURCE OUTPUT_DIR [--taxonomy FILE] [--validation-fraction 0.1]
                                         [--seed 42] [--max-pixels N] [--reviewed MANIFEST]

SOURCE is one of
- a folder with one sub-folder per label (`photos/Pool/a.jpg`, `photos/Staircase_Elevator/b.png`). Folder names
  match labels case-insensitively, with spaces, `_`, `-` and `/` treated alike (a label such as
  `Staircase/Elevator` cannot be a folder name); hidden files are skipped, every other file is tried as an image;
- a CSV manifest (`.csv`, header row with columns `image` and `label`) or a JSON-lines manifest (`.jsonl`, one
  `{"image": ..., "label": ...}` object per line). `image` is a local path (relative paths resolve against the
  manifest's folder) or an `s3://bucket/key` URI, read with boto3 and the ambient AWS credentials.

Every photo goes through `classification.images.normalize` — the exact bytes production sends to the endpoint —
and each row is `{"images": [jpeg], "messages": Taxonomy.training_messages(label)}`, the seed's format. Rows with
an unknown label, an unreadable/corrupt/unsupported image, a duplicate of an earlier photo (same content hash) or
the same photo under two labels are left out and listed in `OUTPUT_DIR/report.json` with their row references;
taxonomy labels without any photo are listed too; the taxonomy itself is saved as `OUTPUT_DIR/taxonomy.json`.
The split is stratified per label and seeded: a label with n usable photos puts round(n * fraction) of them (at
least 1 once n >= 2, never all) into validation. The build fails (exit 1) only if no usable photo remains.

--reviewed adds reviewers' decisions (a JSON-lines manifest from `python -m tools.review_export`): their photos
join the dataset, read at the exact `version_id` the reviewer saw, and where SOURCE holds the same photo (same
content) under another label the reviewer's label wins; those SOURCE rows are listed as `superseded_by_review`.

Limits: memory stays flat (normalised JPEGs are spooled to a temporary folder, then streamed into Arrow); the
output needs about 150-250 kB per photo of disk, twice during the build.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import random
import re
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from classification.contract import Taxonomy
from classification.images import DEFAULT_MAX_PIXELS, InvalidImage, normalize

DEFAULT_VALIDATION_FRACTION = 0.1
DEFAULT_SEED = 42
REPORT_FILE = "report.json"
TAXONOMY_FILE = "taxonomy.json"
# How many row references each problem lists in the printed summary (report.json lists them all).
PRINTED_EXAMPLES = 5


class DatasetBuildError(RuntimeError):
    """Nothing usable remains, or the source itself cannot be read."""


@dataclass(frozen=True)
class SourceRow:
    ref: str  # where a person finds the row: "manifest.csv:12" or "photos/Pool/a.jpg"
    image: str  # local path or s3:// URI
    label: str  # as written in the source; matched against the taxonomy later
    version_id: str | None = None  # an S3 object version to read (reviewed decisions name the version seen)
    reviewed: bool = False  # a reviewer's decision: wins over SOURCE's label for the same photo
    rejected: bool = False  # a review_export row a reviewer rejected (not a usable hotel photo): never trained


@dataclass
class Problem:
    ref: str
    image: str
    reason: str


@dataclass
class BuildReport:
    source: str
    rows_read: int = 0
    usable: int = 0
    train: int = 0
    validation: int = 0
    per_label: dict[str, dict[str, int]] = field(default_factory=dict)
    malformed_rows: list[Problem] = field(default_factory=list)
    unknown_labels: list[Problem] = field(default_factory=list)
    unreadable_images: list[Problem] = field(default_factory=list)
    duplicates: list[Problem] = field(default_factory=list)
    conflicting_labels: list[Problem] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    validation_sources: list[str] = field(default_factory=list)
    reviewed_source: str | None = None
    reviewed_rows: int = 0
    reviewed_rejected: int = 0  # rows of the review export a reviewer rejected: left out
    superseded_by_review: list[Problem] = field(default_factory=list)

    def problem_counts(self) -> dict[str, int]:
        return {
            "malformed_rows": len(self.malformed_rows),
            "unknown_labels": len(self.unknown_labels),
            "unreadable_images": len(self.unreadable_images),
            "duplicates": len(self.duplicates),
            "conflicting_labels": len(self.conflicting_labels),
            "empty_classes": len(self.empty_classes),
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["problem_counts"] = self.problem_counts()
        return data


# -- reading the source -----------------------------------------------------------------------------------------


def folder_key(name: str) -> str:
    """A label or folder name reduced to what a file system can hold: case, `_`, `-`, `/`, spaces ignored."""
    return re.sub(r"[\s_/\-]+", " ", name.casefold()).strip()


def read_source(source: str) -> tuple[list[SourceRow], list[Problem]]:
    """The rows of a label folder, CSV manifest or JSON-lines manifest (local path or s3:// URI).

    Returns the rows and the manifest lines that are not a row (bad JSON, no image field); a source that
    cannot be read at all raises DatasetBuildError.
    """
    if source.startswith("s3://"):
        if not source.endswith((".csv", ".jsonl")):
            raise DatasetBuildError(f"an s3:// source must be a .csv or .jsonl manifest, got {source}")
        try:
            text = read_bytes(source).decode("utf-8-sig")
        except Exception as error:  # botocore's errors share no useful base class
            raise DatasetBuildError(f"cannot read manifest {source}: {error}") from error
        base = source.rsplit("/", 1)[0]
        return _parse_manifest(text, name=source, resolve=lambda image: _resolve_s3(base, image))
    path = Path(source)
    if path.is_dir():
        return _read_folder(path), []
    if not path.is_file():
        raise DatasetBuildError(f"source {source} is neither a folder nor a manifest file")
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise DatasetBuildError(f"manifest {source} must end in .csv or .jsonl")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports start with a BOM
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetBuildError(f"cannot read manifest {source}: {error}") from error
    return _parse_manifest(text, name=str(path), resolve=lambda image: _resolve_local(path.parent, image))


def _read_folder(root: Path) -> list[SourceRow]:
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(folder.rglob("*")):
            if file.is_file() and not any(part.startswith(".") for part in file.relative_to(root).parts):
                rows.append(SourceRow(ref=str(file.relative_to(root)), image=str(file), label=folder.name))
    if not rows:
        raise DatasetBuildError(f"folder {root} holds no files in label sub-folders (expected {root}/<label>/*)")
    return rows


def _parse_manifest(
    text: str, *, name: str, resolve: Callable[[str], str]
) -> tuple[list[SourceRow], list[Problem]]:
    records: list[tuple[str, Any]] = []
    malformed: list[Problem] = []
    if name.endswith(".jsonl"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"{name}:{number}", json.loads(line)))
            except json.JSONDecodeError as error:
                malformed.append(Problem(f"{name}:{number}", "", f"not a JSON object: {error}"))
    else:
        reader = csv.DictReader(text.splitlines())
        missing = {"image", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetBuildError(
                f"{name}: the header must name the columns image and label (missing: {', '.join(sorted(missing))})"
            )
        # Line 1 is the header, so data row i sits on line i + 1 (what a spreadsheet shows).
        records += [(f"{name}:{number}", record) for number, record in enumerate(reader, start=2)]
    if not records and not malformed:
        raise DatasetBuildError(f"manifest {name} has no rows")
    rows = []
    for ref, record in records:
        image = record.get("image") if isinstance(record, dict) else None
        if not isinstance(image, str) or not image.strip():
            malformed.append(Problem(ref, "", "no image path or URI in the image field"))
            continue
        label = record.get("label")
        # An empty label is reported like any other label the taxonomy does not know.
        label = label.strip() if isinstance(label, str) else ""
        version = record.get("version_id") if isinstance(record, dict) else None
        version = version if isinstance(version, str) and version else None
        rejected = isinstance(record, dict) and record.get("decision") == "reject"
        rows.append(
            SourceRow(ref=ref, image=resolve(image.strip()), label=label, version_id=version, rejected=rejected)
        )
    return rows, malformed


def _resolve_local(base: Path, image: str) -> str:
    return image if image.startswith("s3://") or Path(image).is_absolute() else str(base / image)


def _resolve_s3(base: str, image: str) -> str:
    return image if image.startswith("s3://") else f"{base}/{image.lstrip('/')}"


_s3_client: Any = None


def read_bytes(location: str, version_id: str | None = None) -> bytes:
    """The bytes of a local file or an s3:// object (at `version_id` when given)."""
    if not location.startswith("s3://"):
        return Path(location).read_bytes()
    global _s3_client
    if _s3_client is None:
        import boto3  # only needed for s3 sources; keeps local builds free of AWS set-up

        _s3_client = boto3.client("s3")
    bucket, _, key = location[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"malformed S3 URI {location!r} (expected s3://bucket/key)")
    params = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
    return _s3_client.get_object(**params)["Body"].read()


# -- building ---------------------------------------------------------------------------------------------------


def match_label(raw: str, taxonomy: Taxonomy, *, from_folder: bool) -> str | None:
    if raw in taxonomy.labels:
        return raw
    key = folder_key(raw) if from_folder else raw.casefold()
    for label in taxonomy.labels:
        if (folder_key(label) if from_folder else label.casefold()) == key:
            return label
    return None


def stratified_split(
    labels: Sequence[str], *, validation_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices of train and validation rows, the same proportion of every label in both (seeded)."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    rng = random.Random(seed)
    train: list[int] = []
    validation: list[int] = []
    for label in sorted(by_label):
        indices = by_label[label]
        rng.shuffle(indices)
        count = round(len(indices) * validation_fraction)
        if validation_fraction > 0 and len(indices) >= 2:
            # Every label with two photos is measured; no label loses its last training photo.
            count = min(max(count, 1), len(indices) - 1)
        validation.extend(indices[:count])
        train.extend(indices[count:])
    return sorted(train), sorted(validation)


def build_dataset(
    source: str,
    output_dir: str | Path,
    *,
    taxonomy: Taxonomy,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = DEFAULT_SEED,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    reviewed: str | None = None,
) -> BuildReport:
    """Read, check, normalise and split `source` (plus `reviewed` decisions); save the DatasetDict and
    report.json into output_dir."""
    from datasets import Dataset, DatasetDict, Features, Image, List, Value
    from tqdm.auto import tqdm

    # The validation split is what evaluation and the pipeline's accuracy gate measure: it cannot be empty.
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    rows, malformed = read_source(source)
    from_folder = not source.startswith("s3://") and Path(source).is_dir()
    report = BuildReport(source=source, rows_read=len(rows) + len(malformed), malformed_rows=malformed)
    # A review export used as the source: its rejected photos are not training data (and have no label).
    report.reviewed_rejected = sum(row.rejected for row in rows)
    rows = [row for row in rows if not row.rejected]
    if reviewed is not None:
        rows = _reviewed_rows(reviewed, report) + rows  # first, so a reviewer's label claims its photo
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="build_dataset_", dir=output) as spool:
        kept: list[tuple[SourceRow, str, str]] = []  # (row, label, content hash)
        first_by_hash: dict[str, tuple[SourceRow, str]] = {}
        conflicted: set[str] = set()
        for row in tqdm(rows, desc="reading photos", unit="photo", disable=not progress):
            label = match_label(row.label, taxonomy, from_folder=from_folder and not row.reviewed)
            if label is None:
                reason = f"label {row.label!r} is not in the taxonomy"
                report.unknown_labels.append(Problem(row.ref, row.image, reason))
                continue
            try:
                data = read_bytes(row.image, row.version_id)
            except Exception as error:  # any I/O or S3 error: this row is unusable, the build goes on
                report.unreadable_images.append(Problem(row.ref, row.image, f"cannot read: {error}"))
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in first_by_hash:
                first, first_label = first_by_hash[digest]
                if first.reviewed and not row.reviewed and first_label != label:
                    reason = f"labelled {label!r} here; a reviewer chose {first_label!r} ({first.ref})"
                    report.superseded_by_review.append(Problem(row.ref, row.image, reason))
                elif first_label == label:
                    report.duplicates.append(Problem(row.ref, row.image, f"same content as {first.ref}"))
                else:
                    conflicted.add(digest)
                    report.conflicting_labels.append(
                        Problem(row.ref, row.image, f"same photo as {first.ref} but labelled {label!r}")
                    )
                continue
            try:
                jpeg = normalize(data, max_pixels=max_pixels).jpeg
            except InvalidImage as error:
                report.unreadable_images.append(Problem(row.ref, row.image, error.reason))
                continue
            first_by_hash[digest] = (row, label)
            Path(spool, digest + ".jpg").write_bytes(jpeg)
            kept.append((row, label, digest))

        # A photo under two labels teaches nothing reliable: its first copy goes too.
        for row, label, _ in [entry for entry in kept if entry[2] in conflicted]:
            report.conflicting_labels.append(
                Problem(row.ref, row.image, f"labelled {label!r} here and differently elsewhere")
            )
        kept = [entry for entry in kept if entry[2] not in conflicted]
        if not kept:
            raise DatasetBuildError(_nothing_usable(report))

        counts = Counter(label for _, label, _ in kept)
        report.empty_classes = [label for label in taxonomy.labels if counts[label] == 0]
        train_idx, val_idx = stratified_split(
            [label for _, label, _ in kept], validation_fraction=validation_fraction, seed=seed
        )
        report.usable, report.train, report.validation = len(kept), len(train_idx), len(val_idx)
        val_counts = Counter(kept[i][1] for i in val_idx)
        report.per_label = {
            label: {"train": counts[label] - val_counts[label], "validation": val_counts[label]}
            for label in taxonomy.labels
        }
        report.validation_sources = [kept[i][0].ref for i in val_idx]

        features = Features(
            {
                "images": List(Image()),
                "messages": List(
                    {
                        "role": Value("string"),
                        "content": List({"type": Value("string"), "text": Value("string")}),
                    }
                ),
            }
        )

        def rows_of(indices: list[int]) -> Iterator[dict[str, Any]]:
            for i in indices:
                _, label, digest = kept[i]
                jpeg = Path(spool, digest + ".jpg").read_bytes()
                yield {"images": [{"bytes": jpeg, "path": None}], "messages": taxonomy.training_messages(label)}

        splits = {"train": train_idx, "validation": val_idx}
        dataset = DatasetDict(
            {
                name: Dataset.from_generator(
                    rows_of, gen_kwargs={"indices": indices}, features=features, cache_dir=spool, split=name
                )
                if indices
                # datasets cannot generate an empty split; an empty validation split is legal (tiny data)
                else Dataset.from_dict({"images": [], "messages": []}, features=features)
                for name, indices in splits.items()
            }
        )
        dataset.save_to_disk(str(output))
    # Evaluation and serving read the labels from here, so they cannot drift from the dataset's prompt.
    Path(output, TAXONOMY_FILE).write_text(json.dumps({"labels": list(taxonomy.labels)}, indent=2) + "\n")
    Path(output, REPORT_FILE).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return report


def _reviewed_rows(manifest: str, report: BuildReport) -> list[SourceRow]:
    """The rows of a review_export manifest, marked as reviewers' decisions."""
    if not manifest.endswith(".jsonl"):
        raise DatasetBuildError(f"--reviewed takes the JSON-lines manifest of tools.review_export, got {manifest}")
    rows, malformed = read_source(manifest)
    kept = [row for row in rows if not row.rejected]
    report.reviewed_source = manifest
    report.reviewed_rows = len(kept)
    report.reviewed_rejected += len(rows) - len(kept)
    report.rows_read += len(kept) + len(malformed)
    report.malformed_rows += malformed
    return [dataclasses.replace(row, reviewed=True) for row in kept]


def _nothing_usable(report: BuildReport) -> str:
    counts = ", ".join(f"{name} {count}" for name, count in report.problem_counts().items() if count)
    return f"no usable photo among {report.rows_read} rows of {report.source} ({counts})"


def format_summary(report: BuildReport) -> str:
    lines = [
        f"{report.usable} usable of {report.rows_read} rows: {report.train} train, {report.validation} validation",
    ]
    if report.reviewed_source:
        lines.append(f"{report.reviewed_rows} rows of reviewers' decisions from {report.reviewed_source}")
    if report.reviewed_rejected:
        lines.append(f"{report.reviewed_rejected} photos reviewers rejected (not usable hotel photos) left out")
    for name in (
        "malformed_rows",
        "unknown_labels",
        "unreadable_images",
        "duplicates",
        "conflicting_labels",
        "superseded_by_review",
    ):
        problems: list[Problem] = getattr(report, name)
        if problems:
            lines.append(f"{name.replace('_', ' ')}: {len(problems)}")
            lines += [f"  {p.ref}: {p.reason}" for p in problems[:PRINTED_EXAMPLES]]
            if len(problems) > PRINTED_EXAMPLES:
                lines.append(f"  ... {len(problems) - PRINTED_EXAMPLES} more in {REPORT_FILE}")
    if report.empty_classes:
        lines.append(f"empty classes ({len(report.empty_classes)}): {', '.join(report.empty_classes)}")
    width = max(len(label) for label in report.per_label)
    lines.append(f"{'label':<{width}}  train  validation")
    lines += [
        f"{label:<{width}}  {n['train']:>5}  {n['validation']:>10}"
        for label, n in report.per_label.items()
        if n["train"] or n["validation"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training_job.build_dataset",
        description="Build the train/validation DatasetDict (images + messages) from labelled photos.",
        epilog="SOURCE: a folder of label sub-folders, or a .csv/.jsonl manifest with image and label "
        "(local path or s3:// URI). Problems are listed in OUTPUT_DIR/report.json.",
    )
    parser.add_argument("source", help="label folder, manifest.csv or manifest.jsonl (local or s3://)")
    parser.add_argument("output_dir", type=Path, help="where to save the DatasetDict and report.json")
    parser.add_argument("--taxonomy", type=Path, default=None, help="taxonomy JSON (default: the shipped one)")
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=DEFAULT_VALIDATION_FRACTION,
        help=f"share of each label held out for evaluation (default {DEFAULT_VALIDATION_FRACTION})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"split seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"reject photos that would decode more pixels than this (default {DEFAULT_MAX_PIXELS:,})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in CI logs)")
    parser.add_argument(
        "--reviewed",
        default=None,
        help="reviewers' decisions (python -m tools.review_export manifest, local or s3://): added, and their "
        "label wins over SOURCE's for the same photo",
    )
    args = parser.parse_args(argv)
    taxonomy = Taxonomy.load(args.taxonomy) if args.taxonomy else Taxonomy.load()
    try:
        report = build_dataset(
            args.source,
            args.output_dir,
            taxonomy=taxonomy,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            max_pixels=args.max_pixels,
            progress=not args.no_progress and os.environ.get("TQDM_DISABLE") != "1",
            reviewed=args.reviewed,
        )
    except (DatasetBuildError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_summary(report))
    print(f"saved to {args.output_dir} (problems in {args.output_dir / REPORT_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
