"""Day one, offline: the base model labels, a scripted reviewer decides, the first fine-tune follows.

    python -m scripts.demo --day-one [--labels 8] [--review-per-label 12] [--upload-per-label 3] [--epochs 12]
                                     [--seed 0] [--output-dir DIR]

Rehearses docs/day-one.md on one machine, with the real parts of each step:
1. stage: the untrained tiny LLaVA-NeXT (training_job/tiny_model.py) plays llava-v1.6-mistral-7b-hf; under the
   choice grammar its answers are still taxonomy labels. Its model_profile.json names the base profile and is put
   beside its (emulated) staged prefix in the training bucket, as tools/stage_base_model.py leaves it;
2. serve it (vLLM's CPU engine) and label every upload with the unmodified Lambda handler (local_aws/), whose
   MODEL_ID is that prefix: the labeller reads the record and asks the base profile's question; with no margin
   threshold calibrated, every answer goes to review;
3. a scripted reviewer, who knows each photo's true label, confirms or corrects the first batch through the review
   API (review_api.local: the page's own HTTP API); the second batch waits, unreviewed;
4. the decisions are exported (tools.review_export) and built into a dataset (training_job.build_dataset), with
   held-out reviewed photos in its validation split;
5. the fine-tune is trained (`python -m training_job.train`), evaluated against the base on the held-out photos
   (training_job.evaluate with a baseline, in each model's profile) and gated as the pipeline's ServedModelGate
   gates: rolled out only if strictly better;
6. served (the engine restarted with the fine-tune, the model id switched to its prefix as a registry rollout
   does), and a reclassify backfill (handler.backfill_handler) relabels what the base model labelled; the
   reviewer's decisions stay.
It prints the base model's and the fine-tune's accuracy on the same unreviewed photos, before and after, and
exits 0 only if the fine-tune's is higher. Takes ~3-5 minutes on 2 cores (199 s measured: two engine starts, a
training, an evaluation of two models).

Differences from AWS, on purpose: those of `python -m scripts.demo`, plus: the base is a random tiny model built
with the compact image grid (the real base is served on the stock grid), and the pipeline's steps run in this
process rather than in a SageMaker job and a state machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from classification.contract import Taxonomy
from classification.model_profile import BASE, PROFILE_FILE
from local_aws import load_app_config
from local_aws.emulation import CREDENTIALS, REGION, LocalAws
from local_aws.lambda_runner import (
    ENDPOINT_NAME,
    LambdaContext,
    label_realtime,
    lambda_environment,
    lambda_module,
    patched_environ,
)
from local_aws.photos import Upload, make_uploads
from scripts.demo_report import Row, accuracy, result_rows, say
from scripts.demo_training import run_training

BASE_PREFIX = "base-models/tiny-llava-next/untrained/"  # the staging tool's layout: base-models/<repo>/<commit>/
FINE_TUNE_PREFIX = "models/photo-labeler-day-one-1/"  # a pipeline run's model directory
VALIDATION_FRACTION = 0.25  # held-out reviewed photos: what the gate compares the two models on
MAX_PAGE = 100  # review_api.inputs MAX_PAGE_SIZE


@dataclass
class DayOneResult:
    before: tuple[int, int]  # (correct, total) of the base model on the unreviewed photos
    after: tuple[int, int]  # the fine-tune's, on the same photos
    reviewed: int
    gate: dict[str, Any]  # metrics.json's baseline comparison
    rows_before: list[Row]
    rows_after: list[Row]
    seconds: dict[str, float]

    @property
    def improved(self) -> bool:
        return _share(self.after) > _share(self.before)


def _share(counts: tuple[int, int]) -> float:
    return counts[0] / counts[1] if counts[1] else 0.0


def _batch(uploads: list[Upload], name: str, *, photos_only: bool) -> list[Upload]:
    """The uploads under distinct keys (`<hotel>/<name>-<file>`), bad files dropped when `photos_only`."""
    batch = []
    for upload in uploads:
        if photos_only and upload.expected_label is None:
            continue
        folder, _, file = upload.key.rpartition("/")
        batch.append(dataclasses.replace(upload, key=f"{folder}/{name}-{file}"))
    return batch


def review_through_the_api(aws: LocalAws, taxonomy_file: Path, truth: dict[str, str]) -> int:
    """The scripted reviewer: the review page's own API calls, confirming or correcting every photo in `truth`."""
    from review_api.local import start_local_review

    decided = 0
    with start_local_review(
        table=aws.table,
        bucket=aws.bucket,
        endpoint_url=aws.endpoint_url,
        region=REGION,
        upload_prefix=aws.upload_prefix,
        taxonomy_file=taxonomy_file,
        reviewer="day-one-reviewer@example.com",
    ) as server:
        cursor: str | None = None
        queue: list[dict[str, Any]] = []
        while True:
            query = f"api/photos?status=NEEDS_REVIEW&limit={MAX_PAGE}" + (f"&cursor={cursor}" if cursor else "")
            page = _api(server.url + query)
            queue += page["photos"]
            cursor = page.get("cursor")
            if not cursor:
                break
        for photo in queue:
            label = truth.get(photo["image_uri"])
            if label is None:
                continue  # the second batch: nobody got to it yet
            body = {"decision": "confirm", "token": photo["token"]}
            if photo["label"] != label:
                body = {"decision": "correct", "label": label, "token": photo["token"]}
            _api(server.url + f"api/photos/{photo['id']}/decision", body)
            decided += 1
    return decided


def _api(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _aws_environment(aws: LocalAws) -> dict[str, str]:
    """boto3's view of the emulation, for the tools that use ambient credentials (export, dataset builder)."""
    return {
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
    }


def export_and_build(aws: LocalAws, workdir: Path, taxonomy: Taxonomy) -> tuple[Path, Any]:
    """tools.review_export's manifest of the decisions -> training_job.build_dataset (photos read from S3)."""
    from tools import review_export
    from training_job import build_dataset as builder

    manifest = workdir / "reviewed.jsonl"
    dataset = workdir / "dataset"
    with patched_environ(_aws_environment(aws)):
        code = review_export.main(
            ["--table", aws.table, "--output", str(manifest), "--endpoint-url", aws.endpoint_url]
        )
        if code != 0:
            raise RuntimeError(f"tools.review_export failed with exit code {code}")
        builder._s3_client = None  # made from the environment just set: the emulation's S3
        try:
            report = builder.build_dataset(
                str(manifest), dataset, taxonomy=taxonomy, validation_fraction=VALIDATION_FRACTION, progress=False
            )
        finally:
            builder._s3_client = None
    return dataset, report


def relabel(aws: LocalAws, keys: list[str], environment: dict[str, str], log: TextIO) -> dict[str, int]:
    """A reclassify backfill over `keys` with the labeller's backfill entry point (as the backfill map runs it)."""
    with patched_environ(environment), lambda_module("handler", log) as handler:
        event = {"Items": [{"Key": key} for key in keys], "BatchInput": {"bucket": aws.bucket, "reclassify": True}}
        # Powertools prints EMF metrics to stdout, and warns on stderr when an invocation emitted none: both belong
        # to the function's log, not the demo's progress.
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            return handler.backfill_handler(event, LambdaContext(timeout_ms=900_000))


def run_day_one(
    workdir: Path,
    *,
    taxonomy: Taxonomy,
    review_per_label: int,
    upload_per_label: int,
    epochs: int,
    seed: int = 0,
    progress: bool = True,
) -> DayOneResult:
    """Steps 1-6 of the module docstring inside `workdir`; every server is stopped before it returns."""
    from model_code.vllm_server import VllmServer
    from training_job.evaluate import evaluate
    from training_job.tiny_model import build_tiny_model

    config = load_app_config()
    seconds: dict[str, float] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    taxonomy_file = workdir / "taxonomy.json"
    taxonomy_file.write_text(
        json.dumps({"labels": list(taxonomy.labels), "descriptions": dict(taxonomy.descriptions)}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    rng = np.random.default_rng(seed)
    reviewed_batch = _batch(
        make_uploads(taxonomy, review_per_label, rng, config.storage.upload_prefix), "b1", photos_only=True
    )
    new_batch = _batch(
        make_uploads(taxonomy, upload_per_label, rng, config.storage.upload_prefix), "b2", photos_only=False
    )

    say("[1/6] staging the base model: the untrained tiny LLaVA-NeXT, its model_profile.json says `base`")
    base_dir = build_tiny_model(workdir / "base-model", taxonomy, profile="compact")
    (base_dir / PROFILE_FILE).write_bytes(BASE.record(source={"repo": "tiny-llava-next", "commit": "untrained"}))

    with (
        LocalAws.for_app(config) as aws,
        (workdir / "lambda.log").open("w", encoding="utf-8") as lambda_log,
        (workdir / "train.log").open("w", encoding="utf-8") as train_log,
    ):
        training_bucket = f"{config.name_prefix}-training"
        aws.s3.create_bucket(Bucket=training_bucket)
        base_uri = f"s3://{training_bucket}/{BASE_PREFIX}"
        aws.s3.put_object(
            Bucket=training_bucket, Key=BASE_PREFIX + PROFILE_FILE, Body=(base_dir / PROFILE_FILE).read_bytes()
        )
        say(f"      model_data_uri={base_uri}")

        say(f"[2/6] serving the base model; uploading {len(reviewed_batch)} + {len(new_batch)} photos ...")
        began = time.monotonic()
        with VllmServer(
            base_dir, endpoint_name=ENDPOINT_NAME, log_file=workdir / "vllm-base.log", progress=say
        ) as engine:
            for upload in [*reviewed_batch, *new_batch]:
                aws.s3.put_object(Bucket=aws.bucket, Key=upload.key, Body=upload.body)
            label_realtime(
                aws,
                engine.base_url,
                taxonomy_file=taxonomy_file,
                config=config,
                log=lambda_log,
                progress=progress,
                model_id=base_uri,
            )
        seconds["base"] = time.monotonic() - began
        rows_before = result_rows(aws.items(), new_batch, aws.bucket)
        before = accuracy(rows_before)
        statuses = [row.status for row in result_rows(aws.items(), [*reviewed_batch, *new_batch], aws.bucket)]
        say(
            f"      the base model labelled {len(statuses)} uploads: {statuses.count('NEEDS_REVIEW')} to review "
            f"(no margin threshold calibrated yet), {statuses.count('REJECTED')} rejected; accuracy on the "
            f"{before[1]} photos of the second batch {before[0]}/{before[1]}"
        )

        say("[3/6] a scripted reviewer decides the first batch through the review API ...")
        truth = {f"s3://{aws.bucket}/{u.key}": u.expected_label for u in reviewed_batch if u.expected_label}
        # The review function's environment as the stack sets it (its decisions emit EMF metrics, into the log).
        with (
            patched_environ({"POWERTOOLS_METRICS_NAMESPACE": config.metrics_namespace}),
            contextlib.redirect_stdout(lambda_log),
        ):
            reviewed = review_through_the_api(aws, taxonomy_file, truth)
        say(f"      {reviewed} photos confirmed or corrected; the second batch still waits")

        say("[4/6] exporting the decisions (tools.review_export) and building the dataset ...")
        dataset, report = export_and_build(aws, workdir, taxonomy)
        say(f"      dataset: {report.train} training photos, {report.validation} held out for the gate")

        say(f"[5/6] training the first fine-tune ({epochs} epochs) and gating it against the base model ...")
        began = time.monotonic()
        fine_tune = run_training(workdir / "fine-tune", base_dir, dataset, epochs=epochs, seed=seed, log=train_log)
        seconds["train"] = time.monotonic() - began
        began = time.monotonic()
        metrics = evaluate(
            fine_tune,
            dataset,
            workdir / "evaluation",
            taxonomy=taxonomy,
            baseline_model_dir=base_dir,
            progress=False,
        )
        seconds["evaluate"] = time.monotonic() - began
        gate = metrics["baseline"]
        say(
            f"      held-out reviewed photos: fine-tune {metrics['accuracy']:.3f}, base {gate['accuracy']:.3f} "
            f"({gate['only_evaluated_right']} photos only the fine-tune got right, {gate['only_baseline_right']} "
            f"only the base): {'better, rolled out' if gate['better'] else 'NOT better: not rolled out'}"
        )
        if not gate["better"]:
            return DayOneResult(before, before, reviewed, gate, rows_before, rows_before, seconds)

        say("[6/6] serving the fine-tune and relabelling what the base model labelled (reclassify backfill) ...")
        fine_tune_uri = f"s3://{training_bucket}/{FINE_TUNE_PREFIX}"
        aws.s3.put_object(
            Bucket=training_bucket,
            Key=FINE_TUNE_PREFIX + PROFILE_FILE,
            Body=(fine_tune / PROFILE_FILE).read_bytes(),
        )
        began = time.monotonic()
        with VllmServer(
            fine_tune, endpoint_name=ENDPOINT_NAME, log_file=workdir / "vllm-fine-tune.log", progress=say
        ) as engine:
            environment = lambda_environment(
                aws,
                sagemaker_runtime_url=engine.base_url,
                taxonomy_file=taxonomy_file,
                config=config,
                model_id=fine_tune_uri,
            )
            summary = relabel(aws, [u.key for u in [*reviewed_batch, *new_batch]], environment, lambda_log)
        seconds["relabel"] = time.monotonic() - began
        say(
            f"      backfill: {summary['labeled']} labelled, {summary['needs_review']} to review, "
            f"{summary['skipped']} skipped (reviewed photos and rejected files keep their result)"
        )
        rows_after = result_rows(aws.items(), new_batch, aws.bucket)
    after = accuracy(rows_after)
    return DayOneResult(before, after, reviewed, gate, rows_before, rows_after, seconds)


def report(result: DayOneResult) -> str:
    """The before/after lines the demo ends with."""
    (b, n), (a, m) = result.before, result.after
    return (
        f"accuracy on the {n} photos nobody reviewed: base model {b}/{n} = {_share(result.before):.1%} (day one), "
        f"first fine-tune {a}/{m} = {_share(result.after):.1%} (after {result.reviewed} reviewed photos)"
    )
