"""Seconds each Lambda handler module takes to import in a fresh Python process: the code part of its INIT phase.

    .venv/bin/python benchmarks/bench_lambda_init.py [--repeat 7]

Since 2025-08-01 Lambda bills the INIT phase of ZIP functions on managed runtimes (AWS Compute Blog, "AWS Lambda
standardizes billing for INIT Phase", 2025-04-29); the cost model charges it on each cold start
(tools/cost/fixed.py, INIT_SECONDS). What runs at INIT here is the module import (boto3, Pillow, Powertools, the
contract); clients are created on the first record. Lambda's own runtime bootstrap is not included (it cannot run
here). Each import runs in a new process; the median of --repeat runs is printed, with min and max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HANDLERS = {
    "labeller (lambda/handler.py)": ("handler", [REPO / "lambda", REPO]),
    "async label writer (lambda/async_handler.py)": ("async_handler", [REPO / "lambda", REPO]),
    "review API (review_api/handler.py)": ("review_api.handler", [REPO]),
}
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "photo-labeler",
    "POWERTOOLS_METRICS_NAMESPACE": "HotelPhotoLabeler",
}
PROBE = (
    "import sys, time\n"
    "sys.path[:0] = {paths!r}\n"
    "start = time.perf_counter()\n"
    "import {module}\n"
    "print(time.perf_counter() - start)\n"
)


def import_seconds(module: str, paths: list[Path]) -> float:
    code = PROBE.format(paths=[str(p) for p in paths], module=module)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **ENVIRONMENT},
        cwd=REPO,
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per handler (default 7)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    print(f"{'handler':<48} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, (module, paths) in HANDLERS.items():
        runs = []
        for index in range(args.repeat):
            runs.append(import_seconds(module, paths))
            print(f"  {name}: run {index + 1}/{args.repeat}", file=sys.stderr, flush=True)
        print(f"{name:<48} {statistics.median(runs):>9.3f} {min(runs):>7.3f} {max(runs):>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
