"""endpoint.mode scheduled's labelling job, measured here on vLLM's CPU build: figures printed, not asserted.

    .venv/bin/python benchmarks/bench_scheduled_job.py [--photos 48] [--concurrency 12] [--batch-size 8]
                                                        [--model-dir DIR --taxonomy-file FILE] [--skip-resume]

1. Offline engine vs served path: the same photos, model and requests (labeller_core.encode_request of the
   Lambda's normalised photo). The served path is model_code/vllm_server.py (vLLM's OpenAI server with
   serving.properties' engine args) answering POST /invocations from `--concurrency` clients (the engine batch,
   so the server batches all it can); the offline path is the job's labelling_job.engine.OfflineEngine answering
   the whole list in one `LLM.chat` call. Engine start-up is timed on neither side. Prints photos/s of each, their
   ratio, how many labels differ and the largest confidence difference.
2. A resume after a Spot interruption: the job's real entry point (local_aws/labelling_job.py, the CDK asset's
   bundle, moto's S3 and DynamoDB) labels `--photos` PENDING photos in batches of `--batch-size`, is SIGKILLed at
   the worst moment past half way (half the batches committed and the next one inferred, not committed), and is
   started again on the same checkpoint. Prints the photos inferred twice (engine answers in both runs minus the
   photos) and the photos missed (no result at the end).

The model defaults to the tiny LLaVA-NeXT with seeded random weights (training_job/tiny_model.py): its labels mean
nothing, but both paths run the same weights, so "identical labels" is a real check. `--model-dir` takes a trained
model with the taxonomy it learnt (the demo's `--output-dir` keeps model/ and taxonomy.json). Time is a 2-layer
model on 2 CPU cores: the ratio shows what the HTTP hop and per-request handling cost next to a tiny model's
compute, far more than next to a 7B model on a GPU. Two engines start: run it under the shared lock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "lambda"))

import numpy as np  # noqa: E402

from classification.contract import Taxonomy  # noqa: E402
from classification.images import normalize  # noqa: E402
from local_aws.labelling_job import SERVE_PYTHON  # noqa: E402
from local_aws.photos import colour_photo, encode, label_colours  # noqa: E402

# The job's engine in the serving venv (vLLM lives there, not in this one): time `answer` on the given requests.
OFFLINE_RUNNER = """
import json, sys, time
from pathlib import Path
from labelling_job.engine import OfflineEngine
model_dir, requests_file, out_file = sys.argv[1:4]
requests = [line.encode() for line in Path(requests_file).read_text().splitlines()]
engine = OfflineEngine(Path(model_dir), device="cpu")
engine.answer(requests[:1])  # warm-up, as the server's first request is not timed either
began = time.perf_counter()
answers = engine.answer(requests)
Path(out_file).write_text(json.dumps({"seconds": time.perf_counter() - began, "answers": answers}))
"""


def make_requests(taxonomy: Taxonomy, count: int, seed: int) -> list[bytes]:
    from labeller_core import encode_request

    rng = np.random.default_rng(seed)
    colours = label_colours(taxonomy)
    labels = list(taxonomy.labels)
    bodies = [encode(colour_photo(colours[labels[i % len(labels)]], rng, (640, 480))) for i in range(count)]
    return [encode_request(taxonomy, normalize(body).jpeg) for body in bodies]


def served(model_dir: Path, requests: list[bytes], concurrency: int) -> tuple[float, list[Any]]:
    from model_code.vllm_server import VllmServer

    def post(url: str, body: bytes) -> Any:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read())

    with VllmServer(model_dir, progress=lambda line: print(line, flush=True)) as server:
        url = server.base_url + "/invocations"
        post(url, requests[0])  # warm-up
        began = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            answers = list(pool.map(lambda body: post(url, body), requests))
        return time.perf_counter() - began, answers


def offline(model_dir: Path, requests: list[bytes], workdir: Path) -> tuple[float, list[Any]]:
    requests_file, out_file = workdir / "requests.jsonl", workdir / "offline.json"
    requests_file.write_text("\n".join(request.decode() for request in requests))
    env = {"PYTHONPATH": f"{REPO}:{REPO / 'lambda'}", "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    result = subprocess.run(
        [str(SERVE_PYTHON), "-c", OFFLINE_RUNNER, str(model_dir), str(requests_file), str(out_file)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"offline engine failed:\n{result.stderr[-3000:]}")
    data = json.loads(out_file.read_text())
    return data["seconds"], data["answers"]


def compare(taxonomy: Taxonomy, requests: list[bytes], concurrency: int, model_dir: Path, workdir: Path) -> None:
    print(f"[1/2] {len(requests)} photos: served path (vLLM server, {concurrency} clients) ...", flush=True)
    served_seconds, served_answers = served(model_dir, requests, concurrency)
    print("      offline engine (the job's OfflineEngine, one LLM.chat call) ...", flush=True)
    offline_seconds, offline_answers = offline(model_dir, requests, workdir)
    a = [taxonomy.parse_response(answer) for answer in served_answers]
    b = [taxonomy.parse_response(answer) for answer in offline_answers]
    differing = sum(x.label != y.label for x, y in zip(a, b, strict=True))
    largest = max(abs((x.confidence or 0) - (y.confidence or 0)) for x, y in zip(a, b, strict=True))
    served_rate, offline_rate = len(requests) / served_seconds, len(requests) / offline_seconds
    print(f"served path:    {served_seconds:7.2f} s  {served_rate:6.2f} photos/s")
    print(f"offline engine: {offline_seconds:7.2f} s  {offline_rate:6.2f} photos/s")
    print(f"offline / served photos/s: {offline_rate / served_rate:.2f}")
    print(f"labels differing: {differing} of {len(requests)}; largest confidence difference {largest:.2e}")


def resume(taxonomy_file: Path, model_dir: Path, photos: int, batch_size: int, workdir: Path) -> None:
    from labeller_aws import DynamoLabelStore, S3ObjectStore
    from labeller_core import LabellerConfig
    from labeller_inputs import ObjectRef, manifest_line
    from scheduled_core import PendingRecorder

    from classification.labeller_environment import LabellerEnvironment
    from local_aws.emulation import LocalAws
    from local_aws.labelling_job import LocalJob, build_bundle, kill

    taxonomy = Taxonomy.load(taxonomy_file)
    environ = {
        "ENDPOINT_MODE": "scheduled",
        "TABLE_NAME": "labels",
        "MODEL_ID": "bench-model",
        "UPLOAD_PREFIX": "",
        "TAXONOMY_FILE": str(taxonomy_file),
    }
    print(f"[2/2] resume: {photos} PENDING photos, batches of {batch_size}, killed at half way ...", flush=True)
    bundle = build_bundle(workdir / "code")
    with LocalAws(
        bucket="photos", table="labels", queue_name="q", upload_prefix="uploads/", max_receive_count=3
    ) as aws:
        recorder = PendingRecorder(
            LabellerConfig.from_environment(LabellerEnvironment.from_environment(environ)),
            objects=S3ObjectStore(aws.s3),
            labels=DynamoLabelStore(aws.dynamodb, aws.table),
        )
        rng = np.random.default_rng(3)
        colours = label_colours(taxonomy)
        lines = []
        for index in range(photos):
            key = f"uploads/h{index % 3}/{index:04d}.jpg"
            label = taxonomy.labels[index % len(taxonomy.labels)]
            aws.s3.put_object(
                Bucket=aws.bucket, Key=key, Body=encode(colour_photo(colours[label], rng, (640, 480)))
            )
            recorder.process(ObjectRef(aws.bucket, key))
            etag = aws.s3.head_object(Bucket=aws.bucket, Key=key)["ETag"].strip('"')
            lines.append(manifest_line(ObjectRef(aws.bucket, key, etag)))
        job = LocalJob(root=workdir / "opt-ml", bundle=bundle, model_dir=model_dir)
        job.put_manifest({"shard-00000.jsonl": "\n".join(lines) + "\n"})
        arguments = ("--device", "cpu", "--batch-size", str(batch_size))
        half = -(-photos // batch_size) // 2
        logs = [workdir / "first.log", workdir / "second.log"]
        with logs[0].open("w") as log:
            process = job.start(environ, aws_endpoint_url=aws.endpoint_url, log=log, arguments=arguments)
            # The worst moment: half the batches committed and the next one inferred, its results not committed.
            while _answered(logs[0], count=True) <= half and process.poll() is None:
                time.sleep(0.05)
            kill(process)
        killed_after = job.finished_batches()
        began = time.perf_counter()
        with logs[1].open("w") as log:
            code = job.run(environ, aws_endpoint_url=aws.endpoint_url, log=log, arguments=arguments)
        if code != 0:
            raise RuntimeError(f"the restarted job failed:\n{logs[1].read_text()[-3000:]}")
        seconds = time.perf_counter() - began
        items = aws.items()
    answered = [_answered(path) for path in logs]
    finals = sum(item["status"] in ("LABELED", "NEEDS_REVIEW", "REJECTED") for item in items)
    print(f"killed with {killed_after} of {-(-photos // batch_size)} batches committed, the next one inferred")
    print(f"engine answers: {answered[0]} before the kill, {answered[1]} after the restart")
    print(f"photos inferred twice: {sum(answered) - photos}   (bound: one batch, {batch_size})")
    print(f"photos missed: {photos - finals}")
    print(f"restarted run: {seconds:.1f} s for the rest, engine start-up included")


def _answered(log: Path, *, count: bool = False) -> int:
    """Photos the engine answered, by the job's log (`count`: the engine calls instead)."""
    total = 0
    for line in log.read_text().splitlines():
        if "engine answered" in line:
            total += 1 if count else int(line.split("engine answered", 1)[1].split()[0])
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/bench_scheduled_job.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=12, help="served path clients (default: engine batch)")
    parser.add_argument("--batch-size", type=int, default=8, help="the job's photos per engine call")
    parser.add_argument("--model-dir", type=Path, default=None, help="a saved model (default: tiny, random)")
    parser.add_argument("--taxonomy-file", type=Path, default=None, help="the labels --model-dir was trained on")
    parser.add_argument("--labels", type=int, default=8, help="taxonomy labels for the tiny model (default 8)")
    parser.add_argument("--skip-resume", action="store_true", help="only the engine comparison")
    parser.add_argument("--skip-compare", action="store_true", help="only the resume")
    args = parser.parse_args(argv)
    if args.photos < 2 or args.concurrency < 1 or args.batch_size < 1:
        parser.error("--photos must be >= 2, --concurrency and --batch-size >= 1")
    if (args.model_dir is None) != (args.taxonomy_file is None):
        parser.error("--model-dir and --taxonomy-file go together")
    if not SERVE_PYTHON.is_file():
        parser.error(f"{SERVE_PYTHON} missing: install the serving environment (make setup)")
    with tempfile.TemporaryDirectory(prefix="bench-scheduled-") as name:
        workdir = Path(name)
        if args.model_dir is None:
            from training_job.tiny_model import build_tiny_model

            taxonomy = Taxonomy(Taxonomy.load().labels[: args.labels])
            taxonomy_file = workdir / "taxonomy.json"
            taxonomy_file.write_text(json.dumps({"labels": list(taxonomy.labels)}))
            model_dir = build_tiny_model(workdir / "tiny", taxonomy, profile="compact")
        else:
            model_dir, taxonomy_file = args.model_dir.resolve(), args.taxonomy_file.resolve()
            taxonomy = Taxonomy.load(taxonomy_file)
        if not args.skip_compare:
            compare(taxonomy, make_requests(taxonomy, args.photos, seed=1), args.concurrency, model_dir, workdir)
        if not args.skip_resume:
            resume(taxonomy_file, model_dir, args.photos, args.batch_size, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
