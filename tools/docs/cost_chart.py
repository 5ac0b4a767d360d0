"""docs/assets/cost-per-1000-photos.svg: $ per 1,000 photos against photos a day, one line per labelling mode, with
the seed's measured cost and GPT-4o's as reference lines, all read from the cost model's own CLI
(`python -m tools.cost_estimate volumes --json` and the backlog estimate's comparison rows).

The SVG is written as text (no plotting dependency): every coordinate is rounded to 0.1 px and nothing depends
on the clock or the machine, so the same model gives the same bytes and a test can compare them.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from tools.cost import cli

PAGE = "docs/assets/cost-per-1000-photos.svg"
# Photos a day: ten log-spaced points a decade from 100 to 1,000,000.
VOLUMES = tuple(round(10 ** (2 + i / 10)) for i in range(41))
MODES = (  # the volumes report's key prefix, the legend, the colour (Okabe-Ito: readable by colour-blind eyes)
    ("real_time", "real-time endpoint", "#0072B2"),
    ("async", "async endpoint", "#E69F00"),
    ("scheduled", "scheduled windows (Spot)", "#009E73"),
)
WIDTH, HEIGHT = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 200, 40, 60  # margins around the plot area
X_RANGE = (100, 1_000_000)
Y_RANGE = (0.05, 1_000.0)


def _cost_cli(*argv: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), stdout=out, stderr=err)
    if status != 0:
        raise RuntimeError(f"python -m tools.cost_estimate {' '.join(argv)} failed: {err.getvalue().strip()}")
    return json.loads(out.getvalue())


def figures() -> dict[str, Any]:
    """The lines and the reference values, from the cost model."""
    volumes = _cost_cli("volumes", "--volumes", *(str(v) for v in VOLUMES), "--json")
    backlog = _cost_cli("--photos", "1M", "--json")["rows"]
    seed = next(row["usd_per_1000"] for row in backlog if row["kind"] == "seed")
    gpt4o = next(row["usd_per_1000"] for row in backlog if row["label"].startswith("GPT-4o, seed's"))
    lines = {
        key: [(row["photos_per_day"], row[f"{key}_per_1000"]) for row in volumes["rows"]] for key, _, _ in MODES
    }
    return {"lines": lines, "seed": seed, "gpt4o": gpt4o}


def _x(volume: float) -> float:
    low, high = (math.log10(v) for v in X_RANGE)
    return LEFT + (math.log10(volume) - low) / (high - low) * (WIDTH - LEFT - RIGHT)


def _y(usd: float) -> float:
    low, high = (math.log10(v) for v in Y_RANGE)
    clamped = min(max(usd, Y_RANGE[0]), Y_RANGE[1])
    return TOP + (high - math.log10(clamped)) / (high - low) * (HEIGHT - TOP - BOTTOM)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def render(data: dict[str, Any] | None = None) -> str:
    data = data or figures()
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        "<title>Cost of labelling: $ per 1,000 photos against photos a day, by labelling mode</title>",
        "<desc>From python -m tools.cost_estimate volumes (stock profile, ml.g5.xlarge, uploads spread over the "
        f"day). Seed's measured cost ${data['seed']:.2f} and GPT-4o's ${data['gpt4o']:.2f} per 1,000 photos as "
        "reference lines.</desc>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">$ per 1,000 photos by photos a day</text>',
    ]
    for exponent in range(2, 7):  # x grid: decades
        volume = 10**exponent
        x = _x(volume)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}" stroke="#dddddd"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle">{_number(volume)}</text>')
    for exponent in range(-1, 4):  # y grid: decades
        usd = 10.0**exponent
        y = _y(usd)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#dddddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">${_number(usd)}</text>')
    out.append(
        f'<text x="{(LEFT + right) / 2:.1f}" y="{HEIGHT - 16}" text-anchor="middle">'
        "photos uploaded a day (log scale)</text>"
    )
    out.append(
        f'<text transform="translate(16 {(TOP + bottom) / 2:.1f}) rotate(-90)" text-anchor="middle">'
        "$ per 1,000 photos (log scale)</text>"
    )
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" fill="none" stroke="#888"/>'
    )
    references = (("seed, measured", data["seed"], "#555555"), ("GPT-4o", data["gpt4o"], "#CC79A7"))
    for label, usd, colour in references:
        y = _y(usd)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{colour}" stroke-width="1.5" '
            'stroke-dasharray="6 4"/>'
        )
        out.append(f'<text x="{right + 8}" y="{y + 4:.1f}" fill="{colour}">{label} ${usd:.2f}</text>')
    legend_y = TOP + 10
    for key, label, colour in MODES:
        points = " ".join(f"{_x(volume):.1f},{_y(usd):.1f}" for volume, usd in data["lines"][key])
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        out.append(
            f'<line x1="{right + 8}" y1="{legend_y:.1f}" x2="{right + 28}" y2="{legend_y:.1f}" '
            f'stroke="{colour}" stroke-width="2.5"/>'
        )
        out.append(f'<text x="{right + 34}" y="{legend_y + 4:.1f}">{label}</text>')
        legend_y += 20
    for line in ("stock profile, ml.g5.xlarge", "uploads spread over the day", "python -m tools.cost_estimate"):
        out.append(f'<text x="{right + 8}" y="{legend_y + 8:.1f}" fill="#666666" font-size="11">{line}</text>')
        legend_y += 16
    out.append("</svg>")
    return "\n".join(out) + "\n"
