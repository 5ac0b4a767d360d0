"""The files a scheduled window and its labelling job exchange, named once (docs/scheduled-mode.md).

Under the window's prefix of the work bucket (`windows/<window id>/`):

    manifest/shard-NNNNN.jsonl   written by the planner (window_core.py), one manifest line per photo version
                                 (labeller_inputs.manifest_line); ShardedByS3Key hands each host whole shards
    checkpoints/                 the job's CheckpointConfig.S3Uri (labelling_job/progress.py):
        done/<host>-NNNNNN.json  finished batches
        summary-<host>.json      each host's counts (JobSummary), summed by the window's Report step

Standard library only: the Lambda bundle and the job's bundle both carry this module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

WINDOWS_PREFIX = "windows/"
MANIFEST_DIR = "manifest/"
CHECKPOINT_DIR = "checkpoints/"
DONE_DIR = "done"
SUMMARY_PREFIX = "summary-"


def window_prefix(window_id: str) -> str:
    return f"{WINDOWS_PREFIX}{window_id}/"


def shard_key(window_id: str, index: int) -> str:
    return f"{window_prefix(window_id)}{MANIFEST_DIR}shard-{index:05d}.jsonl"


def summary_name(host: str) -> str:
    return f"{SUMMARY_PREFIX}{host}.json"


@dataclass
class JobSummary:
    """One host's counts over every attempt of a window's job (a Spot restart adds to them)."""

    host: str
    photos: int = 0  # distinct photo versions in this host's shards
    invalid_lines: int = 0  # manifest lines that name no photo version
    duplicates: int = 0  # repeated manifest lines, dropped
    labeled: int = 0
    needs_review: int = 0
    rejected: int = 0
    missing: int = 0
    skipped: int = 0  # superseded, already final, reviewer's decision, or a newer result won the write
    failed: int = 0  # transient faults: left PENDING for the next window
    inferred: int = 0  # photos the engine answered, every attempt included (> labelled: work done twice)
    resumed: int = 0  # photos the last attempt found finished in the checkpoint
    attempts: int = 0
    seconds: float = 0.0

    COUNTED = ("labeled", "needs_review", "rejected", "missing", "skipped")

    def count(self, status: str) -> None:
        """Add one outcome (a labeller_core.Status value)."""
        name = status.lower()
        if name not in self.COUNTED:
            raise ValueError(f"{status!r} is not a result a window counts")
        setattr(self, name, getattr(self, name) + 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobSummary:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("host"), str):
            raise ValueError("a job summary is a JSON object with a host")
        known = {field.name for field in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})


def total(summaries: list[JobSummary]) -> dict[str, float]:
    """The window's counts: every host's summed (the Report step's output)."""
    names = [field.name for field in fields(JobSummary) if field.name not in ("host", "attempts")]
    sums: dict[str, float] = {name: 0 for name in names}
    for summary in summaries:
        for name in names:
            sums[name] += getattr(summary, name)
    sums["hosts"] = len(summaries)
    return sums
