"""Time and peak memory of classification.images.normalize against a naive decode-resize-encode.

    .venv/bin/python benchmarks/bench_normalize.py [--repeat 5]

Inputs are generated (no downloads): a 12-MP 4000x3000 camera-like JPEG (gradients + sensor noise), the same
picture as a CMYK JPEG, a 4000x3000 RGBA PNG, and a 1920x1080 phone-size JPEG. Each (input, method) runs in a
fresh Python process; memory is the peak RSS increase during the first call (Linux /proc VmHWM, reset through
/proc/self/clear_refs; RSS sees Pillow's C buffers, which tracemalloc would not, and ru_maxrss would inherit
the parent's peak across exec). Time is the median
of --repeat runs in that process. Payload = the JSON request the Lambda sends (base64 JPEG + prompt).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from classification.contract import Taxonomy  # noqa: E402
from classification.images import MAX_SIDE, normalize  # noqa: E402

SAGEMAKER_LIMIT = 6 * 1024 * 1024  # bytes, real-time InvokeEndpoint payload


def camera_like(size: tuple[int, int]) -> Image.Image:
    """Smooth lighting gradients plus per-pixel sensor noise: compresses like a real photo, unlike flat colour."""
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    blue = Image.linear_gradient("L").rotate(90).resize(size)
    base = Image.merge("RGB", (red, green, blue))
    noise = Image.merge("RGB", [Image.effect_noise(size, sigma) for sigma in (18, 22, 26)])
    return Image.blend(base, noise, 0.25)


def make_inputs(folder: Path) -> dict[str, Path]:
    picture = camera_like((4000, 3000))
    inputs = {}
    for name, image, fmt, params in (
        ("jpeg-12mp", picture, "JPEG", {"quality": 92}),
        ("cmyk-jpeg-12mp", picture.convert("CMYK"), "JPEG", {"quality": 92}),
        ("rgba-png-12mp", picture.convert("RGBA"), "PNG", {"compress_level": 1}),
        ("jpeg-1080p", picture.resize((1920, 1080)), "JPEG", {"quality": 90}),
    ):
        path = folder / f"{name}.{fmt.lower()}"
        image.save(path, format=fmt, **params)
        inputs[name] = path
        print(f"  generated {name}: {path.stat().st_size / 1e6:.1f} MB", file=sys.stderr, flush=True)
    return inputs


def naive(data: bytes) -> bytes:
    """What one writes first: full decode, convert, resize, encode."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS, reducing_gap=None)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (this benchmark needs Linux)")


def measure_one(path: Path, method: str, repeat: int) -> dict[str, float]:
    data = path.read_bytes()
    run = (lambda: normalize(data).jpeg) if method == "normalize" else (lambda: naive(data))
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark to the current RSS
    before_kb = _proc_status_kb("VmRSS")
    jpeg = run()  # first call: its peak is the memory figure (later calls reuse freed memory)
    peak_kb = _proc_status_kb("VmHWM")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    payload = len(json.dumps(Taxonomy.load().build_request(jpeg)).encode())
    return {
        "ms": statistics.median(times) * 1000,
        "peak_mb": (peak_kb - before_kb) / 1024,
        "jpeg_kb": len(jpeg) / 1024,
        "payload_kb": payload / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (median reported)")
    parser.add_argument("--one", nargs=2, metavar=("PATH", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(Path(args.one[0]), args.one[1], args.repeat)))
        return

    with tempfile.TemporaryDirectory() as folder:
        print("generating inputs ...", file=sys.stderr, flush=True)
        inputs = make_inputs(Path(folder))
        rows = []
        for name, path in inputs.items():
            results = {}
            for method in ("naive", "normalize"):
                print(f"  measuring {name} / {method} ...", file=sys.stderr, flush=True)
                out = subprocess.run(
                    [sys.executable, __file__, "--repeat", str(args.repeat), "--one", str(path), method],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                results[method] = json.loads(out.strip().splitlines()[-1])
            rows.append((name, path.stat().st_size / 1024, results))

    header = (
        f"{'input':<16} {'in kB':>8} | {'naive ms':>9} {'norm ms':>8} {'speed-up':>8} | "
        f"{'naive MB':>9} {'norm MB':>8} {'mem ratio':>9} | {'jpeg kB':>8} {'request kB':>10} {'% of 6 MB':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, size_kb, r in rows:
        n, o = r["naive"], r["normalize"]
        print(
            f"{name:<16} {size_kb:>8.0f} | {n['ms']:>9.1f} {o['ms']:>8.1f} {n['ms'] / o['ms']:>7.1f}x | "
            f"{n['peak_mb']:>9.1f} {o['peak_mb']:>8.1f} {n['peak_mb'] / max(o['peak_mb'], 0.1):>8.1f}x | "
            f"{o['jpeg_kb']:>8.0f} {o['payload_kb']:>10.0f} {o['payload_kb'] * 1024 / SAGEMAKER_LIMIT:>8.1%}"
        )
    print(f"\nPython {sys.version.split()[0]}, Pillow {Image.__version__}, median of {args.repeat} runs")


if __name__ == "__main__":
    main()
