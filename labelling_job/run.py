"""The labelling job's entry point: label this host's manifest shards with vLLM's offline engine.

    python -m labelling_job.run [--batch-size 64] [--device auto|gpu|cpu]

On SageMaker the container's entry point unpacks the code channel and runs this module (stacks/labelling/job.py);
locally it runs from the bundle (or the repository, lambda/ on the path) under `SM_*` variables
(labelling_job/job_environment.py, which also reads the labeller's settings: the Lambda's environment contract,
classification/labeller_environment.py, ENDPOINT_MODE=scheduled: TABLE_NAME, MODEL_ID, CONFIDENCE_THRESHOLD, ...).

Per batch of `--batch-size` manifest lines:
  1. `WindowLabeller.prepare` each photo (reviewer's decision, already final, If-Match read, MISSING, REJECTED),
     its request in the profile recorded beside the model (`model_profile.json`; none: a fine-tune's);
  2. the engine answers the prepared requests in one `LLM.chat` call;
  3. `WindowLabeller.record` each answer (parser, confidence, threshold, conditional write to DynamoDB);
  4. the batch is committed to the checkpoint (labelling_job/progress.py) with this host's counts.
A restart (Spot interruption, on-demand fallback) skips every committed photo: at most one batch is inferred twice.
A photo that fails (a transient fault, an unexpected error) is logged, counted and left PENDING for the next
window; the job goes on. The engine failing ends the job: the window reports it and the photos stay PENDING.
Exit status: 0 when the shards were worked through (photos that failed are counted in the summary and stay PENDING:
one flaky photo must not fail the window), 1 when the job could not start (configuration), with a one-line reason;
an engine failure ends it with vLLM's traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from labeller_core import LabellerConfig, Outcome, Prepared, TransientFault
from labeller_inputs import ObjectRef, parse_manifest
from scheduled_core import WindowLabeller
from window_files import JobSummary

from classification.labeller_environment import ConfigError, LabellerEnvironment
from classification.model_profile import FINE_TUNE, InvalidProfile, ModelProfile, resolve_profile
from labelling_job.job_environment import JobConfigError, JobEnvironment
from labelling_job.progress import Progress

CODE_ROOT = Path(__file__).resolve().parent.parent  # the bundle's root: TAXONOMY_FILE is relative to it
DEFAULT_BATCH_SIZE = 64
Answer = Callable[[Sequence[bytes]], list[dict[str, Any]]]


def read_manifest(files: Iterable[Path], summary: JobSummary, say: Callable[[str], None]) -> list[ObjectRef]:
    """The distinct photo versions of the shards, in order; malformed and repeated lines are counted, dropped."""
    refs: list[ObjectRef] = []
    seen: set[tuple[str, str | None]] = set()
    invalid = duplicates = 0
    for path in files:
        parsed, problems = parse_manifest(path.read_text(encoding="utf-8"), path.name)
        for problem in problems:
            say(f"manifest line refused: {problem}")
        invalid += len(problems)
        for ref in parsed:
            if (ref.image_uri, ref.etag) in seen:
                duplicates += 1
                continue
            seen.add((ref.image_uri, ref.etag))
            refs.append(ref)
    summary.photos, summary.invalid_lines, summary.duplicates = len(refs), invalid, duplicates
    return refs


class LabellingRun:
    """The loop of the module docstring, over one host's photo versions."""

    def __init__(
        self,
        labeller: WindowLabeller,
        answer: Answer,
        progress: Progress,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        say: Callable[[str], None] = print,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        self.labeller = labeller
        self.answer = answer
        self.progress = progress
        self.batch_size = batch_size
        self.say = say
        self.stop_requested = False  # set on SIGTERM: finish and commit the batch in hand, then stop

    def run(self, refs: list[ObjectRef], summary: JobSummary) -> JobSummary:
        started = time.monotonic()
        finished = self.progress.finished()
        todo = [ref for ref in refs if (ref.image_uri, ref.etag or "") not in finished]
        summary.resumed = len(refs) - len(todo)
        summary.attempts += 1
        self.say(
            f"{self.progress.host}: {len(refs)} photo version(s), {summary.resumed} finished earlier, "
            f"{len(todo)} to label in batches of {self.batch_size}"
        )
        done = 0
        for batch in _chunks(todo, self.batch_size):
            entries = self._batch(batch, summary)
            self.progress.commit(entries)
            done += len(batch)
            summary.seconds = round(summary.seconds + time.monotonic() - started, 3)
            started = time.monotonic()
            self.progress.save_summary(summary)
            self.say(
                f"{self.progress.host}: {done}/{len(todo)} done (labeled {summary.labeled}, needs review "
                f"{summary.needs_review}, rejected {summary.rejected}, missing {summary.missing}, skipped "
                f"{summary.skipped}, failed {summary.failed}; inferred {summary.inferred})"
            )
            if self.stop_requested:
                self.say(f"{self.progress.host}: stopping after a committed batch (SIGTERM)")
                break
        self.progress.save_summary(summary)
        return summary

    def _batch(self, batch: list[ObjectRef], summary: JobSummary) -> list[tuple[str, str, str]]:
        """Label one batch; the (uri, etag, status) of every photo that now has a result."""
        entries: list[tuple[str, str, str]] = []
        prepared: list[Prepared] = []
        for ref in batch:
            result = self._guarded(ref, summary, lambda ref=ref: self.labeller.prepare(ref))
            if isinstance(result, Outcome):
                entries.append(self._finish(ref, result, summary))
            elif isinstance(result, Prepared):
                prepared.append(result)
        if prepared:
            responses = self.answer([item.request for item in prepared])
            summary.inferred += len(prepared)
            # Logged before anything is recorded: a run killed now still shows the inference it paid for.
            self.say(f"{self.progress.host}: engine answered {len(prepared)} photo(s)")
            for item, response in zip(prepared, responses, strict=True):
                result = self._guarded(item.ref, summary, lambda i=item, r=response: self.labeller.record(i, r))
                if isinstance(result, Outcome):
                    entries.append(self._finish(item.ref, result, summary))
        return entries

    def _guarded(self, ref: ObjectRef, summary: JobSummary, step: Callable[[], Any]) -> Any:
        """One photo's step; a fault is logged and counted, the photo stays PENDING, the batch goes on."""
        try:
            return step()
        except TransientFault as error:
            self.say(f"{ref.image_uri}: transient fault, left for the next window: {error}")
        except Exception as error:  # a poison photo must not stop every window: log it with its traceback
            self.say(f"{ref.image_uri}: unexpected {type(error).__name__}, left for the next window: {error}")
            self.say(traceback.format_exc().rstrip())
        summary.failed += 1
        return None

    @staticmethod
    def _finish(ref: ObjectRef, outcome: Outcome, summary: JobSummary) -> tuple[str, str, str]:
        summary.count(outcome.status.value)
        return (ref.image_uri, ref.etag or "", outcome.status.value)


def _chunks(items: list[ObjectRef], size: int) -> Iterator[list[ObjectRef]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def build_labeller(environment: LabellerEnvironment, profile: ModelProfile = FINE_TUNE) -> WindowLabeller:
    """The job's labeller on boto3 (the bundle's pinned copy), built from JobEnvironment.labeller: S3 reads,
    conditional DynamoDB writes; every photo is asked in `profile`, the one recorded beside the model the job runs
    (classification/model_profile.py)."""
    import boto3
    from botocore.config import Config
    from labeller_aws import DynamoLabelStore, S3ObjectStore

    # The manifest is the job's scope (uploads and backfilled photos alike): no upload prefix applies.
    config = replace(LabellerConfig.from_environment(environment, task_root=CODE_ROOT), upload_prefix="")
    session = boto3.session.Session()
    # Adaptive retries absorb throttling of a table shared with the upload path instead of failing photos.
    retries = Config(retries={"mode": "adaptive", "total_max_attempts": 8})
    return WindowLabeller(
        config,
        objects=S3ObjectStore(session.client("s3", config=retries)),
        labels=DynamoLabelStore(session.client("dynamodb", config=retries), environment.table_name),
        profiles=lambda _model: profile,
    )


def detect_device(choice: str) -> str:
    if choice != "auto":
        return choice
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """`environ` replaces the process's environment (tests)."""
    parser = argparse.ArgumentParser(prog="python -m labelling_job.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="photos per engine call")
    parser.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto", help="default: a GPU if any")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        job = JobEnvironment.from_process() if environ is None else JobEnvironment.from_environ(environ)
        labeller = build_labeller(job.labeller, resolve_profile(job.model_dir))
    except (JobConfigError, ConfigError, InvalidProfile) as error:
        print(f"labelling job not started: {error}", file=sys.stderr, flush=True)
        return 1
    progress = Progress(job.checkpoint_dir, job.current_host)
    summary = progress.load_summary()
    refs = read_manifest(job.manifest_files(), summary, _say)
    device = detect_device(args.device)
    _say(f"{job.job_name} {job.current_host} of {len(job.hosts)}: loading {job.model_dir} on {device}")
    from labelling_job.engine import OfflineEngine

    engine = OfflineEngine(job.model_dir, device=device)  # type: ignore[arg-type]
    run = LabellingRun(labeller, engine.answer, progress, batch_size=args.batch_size, say=_say)
    signal.signal(signal.SIGTERM, lambda *_: setattr(run, "stop_requested", True))
    summary = run.run(refs, summary)
    _say(f"{job.current_host}: summary {summary.to_json()}")
    return 0


def _say(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
