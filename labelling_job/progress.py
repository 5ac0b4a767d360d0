"""The labelling job's checkpoint: which photo versions are finished, and each host's running counts.

Everything lives in the checkpoint directory, which SageMaker syncs to `CheckpointConfig.S3Uri` while the job runs
and copies back to every host when a Spot-interrupted job restarts (AWS, "Checkpoints in Amazon SageMaker AI":
https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html), so a restart resumes where the last
finished batch ended:

    done/<host>-<NNNNNN>.json    one immutable file per finished batch: [[image_uri, etag, status], ...]
    summary-<host>.json          the host's counts so far (window_files.JobSummary), rewritten per batch

A batch file is written under a temporary name and renamed, so a half-written file is never read as finished
work. Every host reads every host's batch files: which host gets which shard after a restart does not matter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from window_files import DONE_DIR, JobSummary, summary_name


class Progress:
    def __init__(self, directory: Path, host: str) -> None:
        self.directory = directory
        self.host = host
        self._done_dir = directory / DONE_DIR
        self._done_dir.mkdir(parents=True, exist_ok=True)
        self._next = len(list(self._done_dir.glob(f"{host}-*.json")))

    def finished(self) -> set[tuple[str, str]]:
        """(image_uri, etag) of every photo version any host has finished, in this or an earlier attempt."""
        done: set[tuple[str, str]] = set()
        for path in sorted(self._done_dir.glob("*.json")):
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # a file another host is still syncing: its photos are simply done again
            done.update((str(uri), str(etag)) for uri, etag, _status in entries)
        return done

    def commit(self, entries: Iterable[tuple[str, str, str]]) -> Path:
        """Record a finished batch: (image_uri, etag, status) per photo version."""
        path = self._done_dir / f"{self.host}-{self._next:06d}.json"
        self._write(path, json.dumps([list(entry) for entry in entries]))
        self._next += 1
        return path

    def load_summary(self) -> JobSummary:
        """This host's counts from an earlier attempt (a restart adds to them), or zeros."""
        path = self.directory / summary_name(self.host)
        try:
            return JobSummary.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return JobSummary(host=self.host)

    def save_summary(self, summary: JobSummary) -> None:
        self._write(self.directory / summary_name(self.host), summary.to_json())

    @staticmethod
    def _write(path: Path, text: str) -> None:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, path)
