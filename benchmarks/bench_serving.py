"""Stock vs compact image-token profile, measured through the real serving engine (vLLM's CPU build), one run.

    .venv/bin/python benchmarks/bench_serving.py [--photos 24] [--concurrency 4] [--labels 26]

Builds the tiny LLaVA-NeXT twice with the same seeded weights (training_job/tiny_model.py), once per profile
(the `image_grid_pinpoints` in config.json and the processor config), serves each with model_code/vllm_server.py
(serving.properties' engine args, CPU mapping) and sends the same photos, generated at camera shapes (4:3, 3:2,
16:9, 3:4; 12 MP down to phone size) and normalised by the Lambda's own classification.images.normalize, with the
Lambda's request (classification.contract build_request). Prints, per profile, the mean prompt tokens vLLM
counted (`usage.prompt_tokens`) and photos/s at the given concurrency, then the compact/stock ratios.

What it measures and what it does not: the token counts follow the real model's image geometry (336-px CLIP
tiles, the real pinpoints) but the text tokenizer is the tiny model's; time is that of a 2-layer model on CPU,
where fixed per-request costs weigh more than on a 7B model on a GPU. The ratio of tokens is the real one; the
ratio of time is a lower bound on what a GPU sees, not a forecast (REFERENCE: the 7B architecture measured
x0.48 tokens and x0.55 seconds per request). Engine start-up (~1-2 min per profile on 2 cores) is not timed.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from classification.contract import Taxonomy  # noqa: E402
from classification.images import normalize  # noqa: E402

PROFILES = ("stock", "compact")
SHAPES = ((4000, 3000), (3000, 2000), (1920, 1080), (1200, 1600), (1600, 1200), (1280, 720))


def camera_like(size: tuple[int, int], seed: int) -> bytes:
    """Gradients plus sensor noise, so every photo is different and compresses like a real one."""
    red = Image.linear_gradient("L").rotate(seed * 37 % 360).resize(size)
    green = Image.radial_gradient("L").resize(size)
    blue = Image.linear_gradient("L").rotate(90).resize(size)
    noise = Image.merge("RGB", [Image.effect_noise(size, 15 + seed % 10) for _ in range(3)])
    picture = Image.blend(Image.merge("RGB", (red, green, blue)), noise, 0.25)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def photos(count: int) -> list[bytes]:
    """`count` camera-shaped photos, normalised as the Lambda sends them."""
    return [normalize(camera_like(SHAPES[i % len(SHAPES)], i)).jpeg for i in range(count)]


def _post(url: str, request: dict) -> dict:
    body = json.dumps(request, separators=(",", ":")).encode()
    message = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(message, timeout=600) as response:
        return dict(json.loads(response.read()))


def measure(
    model_dir: Path, taxonomy: Taxonomy, jpegs: list[bytes], concurrency: int, log: Path
) -> dict[str, float]:
    from model_code.vllm_server import VllmServer

    with VllmServer(model_dir, log_file=log) as server:
        url = server.base_url + "/invocations"
        requests = [taxonomy.build_request(jpeg) for jpeg in jpegs]
        _post(url, requests[0])  # first request: lazy initialisation, not throughput
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            answers = list(pool.map(lambda request: _post(url, request), requests))
        seconds = time.perf_counter() - began
    prompt_tokens = [answer["usage"]["prompt_tokens"] for answer in answers]
    return {
        "prompt_tokens": statistics.mean(prompt_tokens),
        "photos_per_second": len(jpegs) / seconds,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=24, help="photos per profile (default 24)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument(
        "--labels", type=int, default=26, help="first N taxonomy labels in the prompt (default 26)"
    )
    args = parser.parse_args(argv)
    if args.photos < 1 or args.concurrency < 1:
        parser.error("--photos and --concurrency must be >= 1")
    full = Taxonomy.load()
    if not 2 <= args.labels <= len(full.labels):
        parser.error(f"--labels must be within 2..{len(full.labels)}")
    taxonomy = Taxonomy(full.labels[: args.labels])

    from training_job.tiny_model import build_tiny_model

    jpegs = photos(args.photos)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        for profile in PROFILES:
            print(f"{profile}: building the tiny model and starting vLLM ...", flush=True)
            model_dir = build_tiny_model(Path(tmp) / profile, taxonomy, profile=profile)
            results[profile] = measure(model_dir, taxonomy, jpegs, args.concurrency, Path(tmp) / f"{profile}.log")
    print(
        f"\n{args.photos} photos, concurrency {args.concurrency}, {len(taxonomy.labels)} labels, tiny model on CPU"
    )
    print(f"{'profile':<10}{'prompt tokens':>15}{'photos/s':>11}{'seconds':>10}")
    for profile, result in results.items():
        print(
            f"{profile:<10}{result['prompt_tokens']:>15.1f}{result['photos_per_second']:>11.2f}"
            f"{result['seconds']:>10.1f}"
        )
    stock, compact = results["stock"], results["compact"]
    print(
        f"compact/stock: prompt tokens x{compact['prompt_tokens'] / stock['prompt_tokens']:.2f}, "
        f"photos/s x{compact['photos_per_second'] / stock['photos_per_second']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
