"""endpoint.mode scheduled on this machine: uploads recorded PENDING, then one window labels them with the job.

    upload queue -> lambda/handler.py (scheduled: validate, record PENDING)
      -> lambda/window_handler.py survey + plan (manifest shards in the work bucket)
      -> the labelling job (local_aws/labelling_job.py: its bundle and entry point, vLLM's offline engine)
      -> lambda/window_handler.py report

The handlers run unmodified in this process against the emulation, as local_aws/lambda_runner.py runs them; the
window's steps are called in the state machine's order with the settings the stack gives them
(`ScheduledLabellingConfig.plan_settings`), and the job gets the shards SageMaker's ShardedByS3Key would give
its single host (all of them). What the window state machine decides around these steps (when to start, overlap,
Spot fallback) is tested on the template (tests/stacks/labelling/test_labelling_window.py), not played here.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from classification.labeller_environment import LabellerEnvironment, WindowEnvironment
from local_aws.emulation import LocalAws
from local_aws.labelling_job import LocalJob, build_bundle
from local_aws.lambda_runner import (
    MODEL_ID,
    DrainStats,
    LambdaContext,
    drain_uploads,
    lambda_environment,
    lambda_module,
    patched_environ,
)

if TYPE_CHECKING:
    from stacks.config import AppConfig

WINDOW_ID = "local-window"


def label_scheduled(
    aws: LocalAws,
    model_dir: Path,
    *,
    taxonomy_file: Path,
    config: AppConfig,
    log: TextIO,
    workdir: Path,
    progress: bool = True,
) -> DrainStats:
    """Drain the upload queue in scheduled mode, then run one window; `drain.window` holds its report."""
    say = _say if progress else _quiet
    environment = lambda_environment(
        aws, sagemaker_runtime_url=aws.endpoint_url, taxonomy_file=taxonomy_file, config=config, scheduled=True
    )
    drain = drain_uploads(aws, environment, config=config, log=log, progress=progress)
    say(f"      uploads recorded: {_statuses(aws)}")

    began = time.monotonic()
    work_bucket = f"{config.name_prefix}-labelling-work"
    aws.s3.create_bucket(Bucket=work_bucket)
    # The stack's contract (classification/labeller_environment.py), as stacks/labelling/window.py writes it.
    window_environment = {
        **WindowEnvironment(
            table_name=aws.table,
            work_bucket=work_bucket,
            service_name="photo-labeler-window",
            metrics_namespace=config.metrics_namespace,
        ).to_environment(),
        **{name: value for name, value in environment.items() if name.startswith("AWS_")},
    }
    with patched_environ(window_environment), lambda_module("window_handler", log) as window:
        step = _step(window, log)
        survey = step({"action": "survey", "limit": config.scheduled.backlog_threshold})
        say(f"      window survey: {survey['pending']} PENDING, oldest waited {survey['oldest_age_seconds']} s")
        plan = step({"action": "plan", "window_id": WINDOW_ID, "settings": config.scheduled.plan_settings()})
        say(f"      window plan: {plan['photos']} photos in {plan['shards']} shard(s) for {plan['hosts']} host(s)")
        if plan["photos"]:
            _run_job(aws, work_bucket, plan, model_dir, taxonomy_file, config, workdir, log, say)
        drain.window = step({"action": "report", "window_id": WINDOW_ID})
    drain.seconds += time.monotonic() - began
    say(f"      after the window: {_statuses(aws)}")
    return drain


def _step(module: Any, log: TextIO) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def call(event: dict[str, Any]) -> dict[str, Any]:
        # Powertools prints EMF metrics to stdout, and warns when a step (plan) publishes none: both go to the log.
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return module.lambda_handler(event, LambdaContext(timeout_ms=300_000))

    return call


def _say(message: str) -> None:
    print(message, flush=True)


def _quiet(message: str) -> None:
    return


def _run_job(
    aws: LocalAws,
    work_bucket: str,
    plan: dict[str, Any],
    model_dir: Path,
    taxonomy_file: Path,
    config: AppConfig,
    workdir: Path,
    log: TextIO,
    say: Callable[[str], None],
) -> None:
    say("      labelling job: bundling its code (pinned boto3) ...")
    job = LocalJob(root=workdir / "opt-ml", bundle=build_bundle(workdir / "job-code"), model_dir=model_dir)
    listed = aws.s3.list_objects_v2(Bucket=work_bucket, Prefix=plan["manifest_prefix"]).get("Contents", [])
    job.put_manifest(
        {
            entry["Key"].rsplit("/", 1)[1]: aws.s3.get_object(Bucket=work_bucket, Key=entry["Key"])["Body"]
            .read()
            .decode()
            for entry in listed
        }
    )
    # As the window's job state writes it (stacks/labelling/window_states.py), with the taxonomy as a local path.
    labeller = LabellerEnvironment(
        table_name=aws.table,
        endpoint_name="",
        model_id=MODEL_ID,
        confidence_threshold=config.upload.confidence_threshold,
        taxonomy_file=str(taxonomy_file.resolve()),
        scheduled=True,
    ).to_environment()
    say(
        f"      labelling job: vLLM's offline engine on {model_dir.name}, batches of "
        f"{config.scheduled.batch_size} (log {log.name}) ..."
    )
    log.flush()
    code = job.run(
        labeller,
        aws_endpoint_url=aws.endpoint_url,
        log=log,
        arguments=("--device", "cpu", "--batch-size", str(config.scheduled.batch_size)),
    )
    if code != 0:
        raise RuntimeError(f"the labelling job exited with code {code}; see {log.name}")
    # The checkpoint SageMaker would sync to the plan's checkpoint prefix (the job's CheckpointConfig.S3Uri, as
    # stacks/labelling/job.py sets it): where the report step reads the summaries.
    for path in job.checkpoint_dir.glob("summary-*.json"):
        aws.s3.put_object(Bucket=work_bucket, Key=plan["checkpoint_prefix"] + path.name, Body=path.read_bytes())


def _statuses(aws: LocalAws) -> str:
    counts: dict[str, int] = {}
    for item in aws.items():
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))


__all__ = ["WINDOW_ID", "label_scheduled"]
