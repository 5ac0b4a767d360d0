"""The whole pipeline on one machine, offline, without an AWS account or a GPU.

    python -m scripts.demo [--labels N] [--train-per-label 8] [--upload-per-label 2] [--epochs 3]
                           [--output-dir DIR] [--seed 0] [--[no-]review] [--mode realtime|async]
    python -m scripts.demo --day-one [--labels N] [--review-per-label 12] [--upload-per-label 3] [--epochs 12]

`--day-one` runs scripts/demo_day_one.py instead: from the base model with no training set, through review, to
the first fine-tune (docs/day-one.md).

1. builds a tiny LLaVA-NeXT (training_job/tiny_model.py) and fine-tunes it (scripts/demo_training.py) with the
   project's own training entry point (`python -m training_job.train`, the real config file plus CPU overrides)
   on generated photos whose label is visible in the pixels (one colour per label), prepared by
   training_job/build_dataset.py;
2. serves it with the real engine, vLLM's CPU build (model_code/vllm_server.py: the serving venv .venv-serve,
   engine args from model_code/serving.properties as LMI maps them, SageMaker Runtime's InvokeEndpoint route);
3. starts AWS emulation (local_aws/: moto's server on 127.0.0.1) with the resources the CDK app defines —
   versioned image bucket, upload queue with its dead-letter queue, labels table with the `by-hotel` and
   `by-status` indexes (stacks/storage/labels_table.py) — and the S3 -> SQS ObjectCreated notification on the
   upload prefix of cdk.json;
4. uploads new photos of every label plus bad files (corrupt JPEG, zero bytes, text, PDF);
5. drives the real Lambda handler (lambda/handler.py `lambda_handler`, unmodified, its boto3 clients pointed at
   the emulation and the backend through `AWS_ENDPOINT_URL*` variables) from the queue the way Lambda's SQS
   event source does (batches of cdk.json's `batch_size`, partial batch failures left for redelivery) until the
   queue is empty, and prints the labels table and the accuracy against the known labels.
6. in a terminal (or with `--review`; `--no-review` skips it), serves the review page (review_api/local.py,
   LOCAL MODE without sign-in) on the emulated table and bucket and prints its URL: click through the photos
   the model was unsure about; Ctrl-C ends it.

Everything lives in a temporary folder and is removed at the end (servers stopped, threads joined), unless
`--output-dir` keeps the model, dataset, labels.csv and the training, engine and handler logs. Takes ~3 minutes on
2 idle cores (training ~1.5 min, the engine's start ~1 min).

Differences from AWS, on purpose: no KMS (moto does not enforce key policies); the queue's visibility timeout is
a few seconds (the stack's is 6x the function timeout) so a retried message comes back quickly; the Lambda
runtime is this Python process.

`--mode async` runs step 5 as endpoint.mode async does: the same handler submits each photo (request in S3,
InvokeEndpointAsync), tools/async_worker.py plays SageMaker (the model server's /invocations, response in S3,
notification to a second queue), and lambda/async_handler.py writes the labels from the notifications.

`--mode scheduled` runs step 5 as endpoint.mode scheduled does (docs/scheduled-mode.md): no endpoint is started;
the same handler validates each upload and records it PENDING, then one labelling window runs: its Lambda steps
(lambda/window_handler.py) page the PENDING photos into a manifest, and the labelling job (its real bundle and
entry point, vLLM's offline engine, local_aws/labelling_job.py) labels them into the table (local_aws/
scheduled_runner.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classification.contract import Taxonomy
from local_aws import load_app_config
from local_aws.emulation import REGION, LocalAws
from local_aws.lambda_runner import ENDPOINT_NAME, DrainStats, label_async, label_realtime
from local_aws.photos import HOTELS, PALETTE, make_uploads, unsure_uploads
from local_aws.scheduled_runner import label_scheduled
from local_aws.training import REPO_ROOT
from scripts.demo_report import Row, accuracy, format_table, result_rows, say, write_csv
from scripts.demo_training import train_model
from stacks.storage import labels_table

# The tiny model learns 8 colours in ~1.5 minutes of CPU training; all 26 labels need ~3x longer.
DEFAULT_LABELS = 8
# Photos mixing two labels' colours: the model is unsure of them, so the review page ends the demo with work.
UNSURE_PHOTOS = 6


# -- the demo -----------------------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    rows: list[Row]
    drain: DrainStats
    queue_left: int
    dead_letters: int
    seconds: dict[str, float]


# -- the review page (--review) -----------------------------------------------------------------------------------


def _until_interrupted(url: str) -> None:
    while True:  # sleep is interrupted by Ctrl-C (KeyboardInterrupt), which stops the page
        time.sleep(3600)


def serve_review_page(
    aws: LocalAws, *, taxonomy_file: Path, wait: Callable[[str], None] = _until_interrupted
) -> None:
    """After the pipeline ran: the review page and API (review_api/local.py, LOCAL MODE, no sign-in) on the demo's
    emulated table and bucket, until `wait(url)` returns or Ctrl-C; the page's server is stopped either way.

    The page lists the photos the demo's model was unsure about (NEEDS_REVIEW); decisions are written to the
    emulated table, so they are lost with it when the demo ends.
    """
    from review_api.local import start_local_review

    waiting = aws.query_count(labels_table.BY_STATUS, "NEEDS_REVIEW")
    with start_local_review(
        table=aws.table,
        bucket=aws.bucket,
        endpoint_url=aws.endpoint_url,
        region=REGION,
        upload_prefix=aws.upload_prefix,
        taxonomy_file=taxonomy_file,
    ) as server:
        say(f"[review] {waiting} photo(s) wait for a reviewer: open {server.url} (LOCAL MODE); Ctrl-C stops it")
        try:
            wait(server.url)
        except KeyboardInterrupt:
            say("[review] stopped")


class _NoServer:
    """Scheduled mode's stand-in for the engine server: nothing serves; the labelling job loads the model."""

    base_url = ""  # never called: the job loads the model itself


@dataclass(frozen=True)
class ServedModel:
    """An engine already serving a trained model (e.g. the test session's), in place of steps 1-2."""

    model_dir: Path
    base_url: str  # answers SageMaker Runtime's /endpoints/<ENDPOINT_NAME>/invocations
    colours: Mapping[str, tuple[int, int, int]]  # label -> the colour of the photos it was trained on


def run_demo(
    workdir: Path,
    *,
    taxonomy: Taxonomy,
    train_per_label: int,
    upload_per_label: int,
    epochs: int,
    seed: int = 0,
    progress: bool = True,
    review: bool = False,
    mode: str = "realtime",
    served: ServedModel | None = None,
    unsure: int = UNSURE_PHOTOS,
) -> DemoResult:
    """Steps 1-5 of the module docstring inside `workdir`; servers are stopped before it returns.

    With `served`, steps 1-2 use that engine and its model instead of training and starting new ones.
    mode "async" runs step 5 through the async endpoint path instead (`label_async`); "scheduled" starts no
    engine server and runs step 5 as PENDING records and one labelling window (`label_scheduled`).
    """
    from model_code.vllm_server import VllmServer

    config = load_app_config()
    seconds: dict[str, float] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    taxonomy_file = workdir / "taxonomy.json"
    taxonomy_file.write_text(json.dumps({"labels": list(taxonomy.labels)}, indent=2) + "\n", encoding="utf-8")

    seconds["train"] = 0.0
    if served is None:
        with (workdir / "train.log").open("w", encoding="utf-8") as train_log:
            say(
                f"[1/5] training a tiny LLaVA-NeXT on {len(taxonomy.labels)} labels x {train_per_label} photos ..."
            )
            began = time.monotonic()
            model_dir = train_model(
                workdir, taxonomy, per_label=train_per_label, epochs=epochs, seed=seed, log=train_log
            )
            seconds["train"] = time.monotonic() - began
        if mode == "scheduled":
            say("[2/5] starting the AWS emulation (no endpoint: the labelling job runs its own engine) ...")
            engine: Any = contextlib.nullcontext(_NoServer())
        else:
            say("[2/5] starting the serving engine (vLLM, CPU) and the AWS emulation ...")
            engine = VllmServer(
                model_dir, endpoint_name=ENDPOINT_NAME, log_file=workdir / "vllm.log", progress=say
            )
    else:
        model_dir = served.model_dir
        say(f"[1/5] using the trained model {model_dir}")
        say(f"[2/5] using the running engine {served.base_url}; starting the AWS emulation ...")
        engine = contextlib.nullcontext(served)
    with (
        engine as backend,
        LocalAws.for_app(config) as aws,
        (workdir / "lambda.log").open("w", encoding="utf-8") as lambda_log,
    ):
        where = "the labelling job's own" if mode == "scheduled" else backend.base_url
        say(f"      engine {where} (model {model_dir.name}), AWS emulation {aws.endpoint_url}")
        indexes = ", ".join(index.name for index in labels_table.INDEXES)
        say(
            f"      bucket {aws.bucket} (notifications on {aws.upload_prefix}*), queue {aws.queue_name} "
            f"(+ DLQ after {aws.max_receive_count} receives), table {aws.table} (GSIs {indexes})"
        )

        colours = served.colours if served is not None else None
        rng = np.random.default_rng(seed + 1)
        uploads = make_uploads(taxonomy, upload_per_label, rng, aws.upload_prefix, colours)
        uploads += unsure_uploads(taxonomy, unsure, rng, aws.upload_prefix, colours)
        bad = sum(upload.expected_label is None and upload.mixes is None for upload in uploads)
        say(
            f"[3/5] uploading {len(uploads) - bad} new photos ({unsure} of them mixing two labels' colours) and "
            f"{bad} bad files ..."
        )
        for upload in uploads:
            aws.s3.put_object(Bucket=aws.bucket, Key=upload.key, Body=upload.body)
        say(f"      {aws.queue_depth()} notifications queued (one is S3's s3:TestEvent)")

        batch_size = config.upload.batch_size
        say(f"[4/5] running lambda/handler.py lambda_handler on the queue (batch size {batch_size}) ...")
        if mode == "scheduled":
            drain = label_scheduled(
                aws,
                model_dir,
                taxonomy_file=taxonomy_file,
                config=config,
                log=lambda_log,
                workdir=workdir,
                progress=progress,
            )
        else:
            label = label_async if mode == "async" else label_realtime
            drain = label(
                aws,
                backend.base_url,
                taxonomy_file=taxonomy_file,
                config=config,
                log=lambda_log,
                progress=progress,
            )
        seconds["label"] = drain.seconds

        rows = result_rows(aws.items(), uploads, aws.bucket)
        queue_left = aws.queue_depth()
        dead_letters = aws.queue_depth(aws.dead_letter_queue_url)
        say("[5/5] results")
        say(format_table(rows))
        statuses = Counter(row.status for row in rows)
        say("      " + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())))
        say(
            f"      GSI by-status: {aws.query_count(labels_table.BY_STATUS, 'REJECTED')} REJECTED, "
            f"{aws.query_count(labels_table.BY_STATUS, 'NEEDS_REVIEW')} NEEDS_REVIEW; GSI by-hotel: "
            f"{aws.query_count(labels_table.BY_HOTEL, HOTELS[0])} photos of {HOTELS[0]}"
        )
        unsure_rows = [row for row in rows if row.status == "NEEDS_REVIEW"]
        say(
            f"      {len(unsure_rows)} photos the model is unsure of wait for a reviewer (NEEDS_REVIEW), "
            f"{sum(row.mixes is not None for row in unsure_rows)} of the {unsure} mixed photos among them"
        )
        if review:
            serve_review_page(aws, taxonomy_file=taxonomy_file)
    correct, total = accuracy(rows)
    per_photo = drain.seconds / max(1, drain.messages)
    say(
        f"accuracy {correct}/{total} = {correct / max(1, total):.1%} on new photos; "
        f"queue left {queue_left}, dead letters {dead_letters}; "
        f"training {seconds['train']:.0f} s, labelling {drain.seconds:.1f} s for {drain.messages} messages "
        f"({per_photo:.2f} s each, {drain.failed_records} retried)"
    )
    write_csv(rows, workdir / "labels.csv")
    return DemoResult(rows, drain, queue_left, dead_letters, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.demo",
        description="Offline end-to-end demo: train a tiny model, serve it locally, emulate S3/SQS/DynamoDB, "
        "run the real Lambda handler, print the labels table.",
    )
    parser.add_argument(
        "--labels",
        type=int,
        default=DEFAULT_LABELS,
        help=f"use the first N taxonomy labels (default {DEFAULT_LABELS}; all 26 need ~3x the training time)",
    )
    parser.add_argument(
        "--train-per-label", type=int, default=10, help="generated photos per label for the dataset (default 10)"
    )
    parser.add_argument("--upload-per-label", type=int, default=3, help="uploaded photos per label (default 3)")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="photo and training seed (default 0)")
    parser.add_argument(
        "--mode",
        choices=("realtime", "async", "scheduled"),
        default="realtime",
        help="endpoint.mode to run: async goes through tools/async_worker.py playing SageMaker; scheduled records "
        "PENDING, then a window's labelling job (vLLM offline engine) labels (default realtime)",
    )
    parser.add_argument(
        "--day-one",
        action="store_true",
        help="rehearse day one instead (scripts/demo_day_one.py): the base model labels, a scripted reviewer "
        "decides, the first fine-tune is trained, gated, served and relabels; exit 0 if it beats the base",
    )
    parser.add_argument(
        "--review-per-label",
        type=int,
        default=12,
        help="--day-one: photos per label the scripted reviewer decides, i.e. the first training set (default 12)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="keep model, dataset, labels.csv and logs here (default: none)",
    )
    parser.add_argument(
        "--review",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="then serve the review page on the emulated table and bucket until Ctrl-C (local mode, no sign-in); "
        "default: on in a terminal, off otherwise (CI, pipes), so `make demo` ends on the page for a person only",
    )
    args = parser.parse_args(argv)
    if args.train_per_label < 1 or args.upload_per_label < 1 or args.epochs < 1:
        parser.error("--train-per-label, --upload-per-label and --epochs must be >= 1")
    if args.day_one and args.review_per_label < 2:
        # build_dataset holds back one reviewed photo per label for the gate and needs one to train on
        parser.error("--review-per-label must be >= 2 (one photo per label to train on, one held out)")
    taxonomy = Taxonomy.load(REPO_ROOT / load_app_config().taxonomy_file)
    if not 2 <= args.labels <= len(taxonomy.labels):
        parser.error(f"--labels must be within 2..{len(taxonomy.labels)}")
    taxonomy = taxonomy.subset(args.labels)
    if len(taxonomy.labels) > len(PALETTE):
        parser.error(f"the demo's photo palette distinguishes at most {len(PALETTE)} labels")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # library progress bars; the demo prints its own progress
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

    began = time.monotonic()
    if args.output_dir is not None:
        if args.output_dir.exists() and any(args.output_dir.iterdir()):
            parser.error(f"--output-dir {args.output_dir} is not empty")
        workdir, cleanup = args.output_dir, None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="photo-labeler-demo-")
        workdir = Path(cleanup.name)
    if args.day_one:
        return _day_one(args, taxonomy, workdir, cleanup, began)
    try:
        result = run_demo(
            workdir,
            taxonomy=taxonomy,
            train_per_label=args.train_per_label,
            upload_per_label=args.upload_per_label,
            epochs=args.epochs,
            seed=args.seed,
            review=sys.stdin.isatty() if args.review is None else args.review,
            mode=args.mode,
        )
    except Exception as error:
        print(f"demo failed: {type(error).__name__}: {error}", file=sys.stderr)
        if cleanup is not None:
            print("(re-run with --output-dir DIR to keep train.log and lambda.log)", file=sys.stderr)
        return 1
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    say(f"done in {time.monotonic() - began:.0f} s" + (f"; kept {workdir}" if cleanup is None else "; cleaned up"))
    lost = [row for row in result.rows if row.status == "NOT-IN-TABLE"]
    return 1 if lost or result.queue_left else 0


def _day_one(
    args: argparse.Namespace,
    taxonomy: Taxonomy,
    workdir: Path,
    cleanup: tempfile.TemporaryDirectory[str] | None,
    began: float,
) -> int:
    from scripts.demo_day_one import report, run_day_one

    try:
        result = run_day_one(
            workdir,
            taxonomy=taxonomy,
            review_per_label=args.review_per_label,
            upload_per_label=args.upload_per_label,
            epochs=args.epochs,
            seed=args.seed,
        )
    except Exception as error:
        print(f"day-one demo failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    say(report(result))
    say(f"done in {time.monotonic() - began:.0f} s" + (f"; kept {workdir}" if cleanup is None else "; cleaned up"))
    return 0 if result.improved else 1


if __name__ == "__main__":
    sys.exit(main())
