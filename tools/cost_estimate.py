"""What will labelling N photos cost, and how long will it take?

    python -m tools.cost_estimate --photos 20M --instances 1 10
    python -m tools.cost_estimate --photos 1M --size 4000x3000:70 --size 1920x1080:30 --json
    python -m tools.cost_estimate --photos 500k --photos-dir ~/sample-photos --instance-type all

For each instance type x token profile x instance count it prints tokens per photo, photos per hour per
instance, $ per 1,000 photos, hours for the backlog and its cost, plus comparison rows: the seed's own
configuration and GPT-4o.

Tokens per photo = image tokens + prompt text tokens + answer tokens.
- Image tokens: the exact LLaVA-NeXT processor arithmetic (`classification.image_tokens`) for each photo size,
  taken after the Lambda's downscale to `--max-side` (1,008 px, `classification.images.MAX_SIDE`), i.e. for
  the pixels the endpoint really receives; the orientation is the displayed one (EXIF applied), because a
  portrait photo costs a few tokens more than the same photo in landscape.
- Prompt text: the shared prompt (`Taxonomy.prompt`) estimated at 3.3 characters per token, plus 11 tokens of
  chat template (BOS, `[INST] `, the newline after the image, ` [/INST]`). Measured with Mistral's
  `tokenizer.model.v1` (the llava-v1.6-mistral-7b-hf vocabulary): our 26-label prompt is 421 characters and
  129 tokens (estimate 128); the seed's 36-label prompt was ~151 tokens. Over 620 random taxonomies of 10-40
  labels the estimate is off by -11 % to +19 % (mean 0 %; benchmarks/bench_cost_text_tokens.py); text is ~6 %
  of a photo's tokens, so that is about 1 % of the total.
- Answer: the mean over the taxonomy's answers ("this is a photo of Pool.", 7-13 tokens) plus `</s>`.
- Prefix caching does not help: LLaVA-NeXT's chat template puts the image before the text, so after the
  first 5 tokens every request differs and vLLM can share no cached prefix. Only a system message could be
  a shared, cacheable prefix.

Throughput model (one parameter, calibrated on the seed's measurement):
- The seed measured 674 s per 1,000 photos on one ml.g5.xlarge (one A10G, vLLM continuous batching) at
  2,180 tokens per photo (2,168 prompt + 12 completion, the usage block of its sample response), i.e.
  2,180,000 / 674 = 3,234 tokens/s per A10G. The workload is prefill-bound (the blog's repo measured
  ~2,957 prompt tokens/s against ~30 generated tokens/s), so time is modelled as proportional to the tokens a
  photo costs: photos/h = 3,234 x 3,600 / tokens per photo. With the seed's tokens this gives back the seed's
  674 s and $0.26 per 1,000 photos by construction. From the arithmetic alone (stock profile, a 16:9 photo,
  a 36-label prompt) it gives 2,124 tokens and $0.257, 1 % under the seed; a 3:2 photo gives $0.28 and a 4:3
  one $0.30 (the seed does not say what its photos were). tests/tools/test_cost_estimate.py checks both.
- Pessimistic figures: the blog's repo measured 700-806 s per 1,000 at concurrency 8-64 (1,154 s
  single-threaded); `*_pessimistic` fields scale hours and cost by 806 / 674 = 1.20.
- Assumptions: the endpoint is kept saturated (a backfill or queue that always has >= 8 requests in
  flight per instance); per-request overheads (base64 transfer, JPEG decode, the CLIP encoder) scale with
  the tokens, which holds for the vision encoder (tokens follow the number of 336-px tiles) but not for the
  fixed HTTP/decode cost, so the compact profile's speed-up is an upper bound; instance start-up, idle
  time and the autoscaling tail are not included; N instances divide the hours, not the cost.
- Other GPUs are not measured. Their speed relative to the A10G is an assumption (L4 ~1.0: similar dense
  BF16 tensor throughput but a 72 W power cap and half the memory bandwidth; L40S ~2.0: ~3x the tensor
  throughput on paper, less in practice). Measure before committing and pass `--tokens-per-second`.

Prices: SageMaker AI real-time inference, on-demand, us-east-1, USD per instance-hour: ml.g5.xlarge is the
seed's $1.408; the others are AWS Price List figures as quoted by several public projects in 2025-2026
(cross-checked in November 2026, not against the live page: this tool runs offline). Prices change and differ per
region and with Savings Plans: pass `--price-per-hour`. GPT-4o: $2.50 per million input tokens and $10 per
million output tokens (OpenAI's list price for gpt-4o, the seed's figure). The seed's GPT-4o row
($5.54 / 1,000) charges LLaVA's 2,180 tokens at the input price; 2,180,000 x $2.50 / 1e6 is in fact $5.45
(the seed transposed two digits). GPT-4o counts image tokens its own way (85 + 170 per 512-px tile at
detail=high, 85 at detail=low), so rows with that accounting are shown as well.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from classification.contract import DEFAULT_TAXONOMY_PATH, InvalidTaxonomy, Taxonomy
from classification.image_tokens import DEFAULT_PROFILE, GRID_PINPOINTS, fit_within, image_tokens

# -- calibration (the seed's measurements) ---------------------------------------------------------------------
SEED_SECONDS_PER_1000 = 674.0  # one ml.g5.xlarge, vLLM batching
SEED_PROMPT_TOKENS = 2168  # usage block of the seed's sample response
SEED_ANSWER_TOKENS = 12
SEED_TOKENS_PER_PHOTO = SEED_PROMPT_TOKENS + SEED_ANSWER_TOKENS
SEED_USD_PER_HOUR = 1.408  # ml.g5.xlarge
SEED_USD_PER_1000 = 0.26  # the seed's headline figure
BLOG_SLOWEST_SECONDS_PER_1000 = 806.0  # the blog repo's slowest batched run (concurrency 8-64)
A10G_TOKENS_PER_SECOND = SEED_TOKENS_PER_PHOTO * 1000 / SEED_SECONDS_PER_1000  # 3,234
PESSIMISTIC_FACTOR = BLOG_SLOWEST_SECONDS_PER_1000 / SEED_SECONDS_PER_1000  # 1.20

# -- text tokens without a tokenizer ----------------------------------------------------------------------------
MISTRAL_CHARS_PER_TOKEN = 3.3  # measured on our prompt with Mistral's tokenizer.model.v1 (421 chars, 129 tokens)
CHAT_TEMPLATE_TOKENS = 11  # BOS + "[INST] " (4) + "\n" after the image (2) + " [/INST]" (4), same tokenizer
END_OF_ANSWER_TOKENS = 1  # </s>

# -- GPT-4o comparison ------------------------------------------------------------------------------------------
GPT4O_USD_PER_M_INPUT = 2.50
GPT4O_USD_PER_M_OUTPUT = 10.00
GPT4O_CHARS_PER_TOKEN = 4.0  # OpenAI's rule of thumb for English (o200k tokenizer)
GPT4O_BASE_TOKENS = 85
GPT4O_TILE_TOKENS = 170
GPT4O_TILE_SIDE = 512  # px

PRICES_AS_OF = "checked 2026-11; verify before budgeting"
PRICES_SOURCE = "SageMaker AI real-time inference, on-demand, us-east-1 (AWS Price List)"
DEFAULT_SIZE = (4000, 3000)  # a 12-MP 4:3 camera photo; the aspect ratio, not the pixels, sets the tokens
DEFAULT_SAMPLE = 2000  # photos whose headers are read from --photos-dir
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"})
PROGRESS_INTERVAL = 0.5  # seconds between progress lines


ASSUMED = "assumed, not measured"


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str
    gpu_memory_gib: int
    vcpus: int
    usd_per_hour: float
    relative_speed: float  # prefill throughput relative to one A10G
    speed_basis: str


INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in (
        InstanceType("ml.g5.xlarge", "A10G", 24, 4, 1.408, 1.0, "measured (seed)"),
        InstanceType("ml.g5.2xlarge", "A10G", 24, 8, 1.515, 1.0, "same GPU as ml.g5.xlarge"),
        InstanceType("ml.g6.xlarge", "L4", 24, 4, 1.1267, 1.0, ASSUMED),
        InstanceType("ml.g6.2xlarge", "L4", 24, 8, 1.222, 1.0, ASSUMED),
        InstanceType("ml.g6e.xlarge", "L40S", 48, 4, 2.61, 2.0, ASSUMED),
        InstanceType("ml.g6e.2xlarge", "L40S", 48, 8, 2.80, 2.0, ASSUMED),
    )
}
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"


class EstimateError(ValueError):
    """An input the estimate cannot use; the message says which and why."""


# -- photo sizes -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoSize:
    width: int  # as displayed (EXIF orientation applied)
    height: int
    weight: float = 1.0


@dataclass(frozen=True)
class SizeMix:
    sizes: tuple[PhotoSize, ...]
    source: str
    # Files the labeller would reject (unreadable, unsupported format): "path: reason", first 20 only.
    unreadable: tuple[str, ...] = ()
    unreadable_count: int = 0
    scanned: int = 0

    def mean(self, tokens_of: Callable[[int, int], float]) -> float:
        total_weight = sum(s.weight for s in self.sizes)
        return sum(s.weight * tokens_of(s.width, s.height) for s in self.sizes) / total_weight


_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*(?::\s*([0-9]*\.?[0-9]+)\s*)?$")


def parse_size(text: str) -> PhotoSize:
    """`WIDTHxHEIGHT` or `WIDTHxHEIGHT:WEIGHT` (the weight is a share of the photos, any positive number)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise EstimateError(f"photo size {text!r} is not WIDTHxHEIGHT or WIDTHxHEIGHT:WEIGHT (e.g. 4000x3000:70)")
    width, height = int(match.group(1)), int(match.group(2))
    weight = float(match.group(3)) if match.group(3) is not None else 1.0
    if width < 1 or height < 1 or weight <= 0:
        raise EstimateError(f"photo size {text!r}: width, height and weight must be positive")
    return PhotoSize(width, height, weight)


_COUNT_RE = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?)\s*([kKmMbB]?)\s*$")
_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


def parse_count(text: str) -> int:
    """A photo count: `20000000`, `20,000,000`, `20_000_000`, `20M`, `1.5k`."""
    match = _COUNT_RE.match(text)
    if not match:
        raise EstimateError(f"photo count {text!r} is not a number like 20000000, 20,000,000 or 20M")
    number = float(match.group(1).replace(",", "").replace("_", "")) * _MULTIPLIERS[match.group(2).lower()]
    if number < 1 or number != int(number):
        raise EstimateError(f"photo count {text!r} must be a whole number of at least 1")
    return int(number)


def scan_folder(
    root: Path, *, sample: int = DEFAULT_SAMPLE, seed: int = 0, progress: TextIO | None = None
) -> SizeMix:
    """Sizes of up to `sample` photos under `root` (uniform random sample), reading file headers only."""
    from PIL import Image

    from classification.images import ALLOWED_FORMATS

    if not root.is_dir():
        raise EstimateError(f"--photos-dir {root} is not a directory")
    if sample < 1:
        raise EstimateError(f"--sample must be at least 1, got {sample}")
    reporter = _Progress(progress)
    chosen, total = _reservoir(_photo_files(root, reporter), sample, random.Random(seed))
    reporter.done(f"found {total:,} photo files under {root}")
    sizes: list[PhotoSize] = []
    unreadable: list[str] = []
    unreadable_count = 0
    for index, path in enumerate(chosen, start=1):
        reporter.update(f"reading headers {index:,}/{len(chosen):,}")
        try:
            # Image.open parses the header only; no pixel is decoded.
            with Image.open(path, formats=ALLOWED_FORMATS) as image:
                width, height = image.size
                orientation = int(image.getexif().get(0x0112, 1))
        except Exception as error:  # any failure here is one the labeller would reject the photo for
            unreadable_count += 1
            if len(unreadable) < 20:
                unreadable.append(f"{path}: {type(error).__name__}: {str(error)[:120]}")
            continue
        if orientation in (5, 6, 7, 8):  # rotated 90 degrees when displayed (and when normalised)
            width, height = height, width
        sizes.append(PhotoSize(width, height))
    reporter.done(f"read {len(chosen):,} headers, {unreadable_count:,} unreadable")
    if not sizes:
        detail = "; ".join(unreadable[:3]) or "no file with a photo suffix"
        raise EstimateError(f"no readable photo under {root} ({detail})")
    source = f"{root} ({len(chosen):,} of {total:,} photos sampled)" if total > len(chosen) else f"{root}"
    return SizeMix(tuple(sizes), source, tuple(unreadable), unreadable_count, len(chosen))


def _photo_files(root: Path, reporter: _Progress) -> Iterator[Path]:
    count = 0
    for directory, _, files in os.walk(root):
        for name in files:
            if Path(name).suffix.lower() in PHOTO_SUFFIXES:
                count += 1
                reporter.update(f"listing photo files: {count:,}")
                yield Path(directory, name)


def _reservoir(items: Iterator[Path], size: int, rng: random.Random) -> tuple[list[Path], int]:
    # Algorithm R: a uniform sample of a listing of unknown length in O(size) memory (buckets hold millions).
    chosen: list[Path] = []
    seen = 0
    for item in items:
        seen += 1
        if len(chosen) < size:
            chosen.append(item)
        else:
            slot = rng.randrange(seen)
            if slot < size:
                chosen[slot] = item
    return chosen, seen


class _Progress:
    """Rate-limited progress lines on stderr (one line rewritten in place on a terminal)."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._last = 0.0
        self._tty = bool(stream is not None and stream.isatty())

    def update(self, message: str) -> None:
        now = time.monotonic()
        if self._stream is None or now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        self._stream.write(f"\r{message}" if self._tty else f"{message}\n")
        self._stream.flush()

    def done(self, message: str) -> None:
        if self._stream is not None:
            self._stream.write(f"\r{message}\n" if self._tty else f"{message}\n")
            self._stream.flush()
        self._last = 0.0


# -- tokens ---------------------------------------------------------------------------------------------------


def estimate_text_tokens(text: str, chars_per_token: float = MISTRAL_CHARS_PER_TOKEN) -> int:
    return math.ceil(len(text) / chars_per_token)


@dataclass(frozen=True)
class TokenBudget:
    image: float  # mean over the size mix
    prompt_text: int
    answer: float  # mean over the taxonomy's answers

    @property
    def total(self) -> float:
        return self.image + self.prompt_text + self.answer


def llava_tokens(sizes: SizeMix, profile: str, taxonomy: Taxonomy, *, max_side: int) -> TokenBudget:
    def tokens_of(width: int, height: int) -> int:
        return image_tokens(*fit_within(width, height, max_side), profile)

    answers = [estimate_text_tokens(choice) + END_OF_ANSWER_TOKENS for choice in taxonomy.choices]
    return TokenBudget(
        image=sizes.mean(tokens_of),
        prompt_text=CHAT_TEMPLATE_TOKENS + estimate_text_tokens(taxonomy.prompt),
        answer=sum(answers) / len(answers),
    )


def gpt4o_image_tokens(width: int, height: int, detail: str) -> int:
    """GPT-4o's own image accounting: 85 at detail=low; at high, 85 + 170 per 512-px tile after scaling."""
    if detail == "low":
        return GPT4O_BASE_TOKENS
    scaled_w, scaled_h = float(width), float(height)
    if max(scaled_w, scaled_h) > 2048:  # first fit within 2048 x 2048
        factor = 2048 / max(scaled_w, scaled_h)
        scaled_w, scaled_h = scaled_w * factor, scaled_h * factor
    if min(scaled_w, scaled_h) > 768:  # then the short side down to 768
        factor = 768 / min(scaled_w, scaled_h)
        scaled_w, scaled_h = scaled_w * factor, scaled_h * factor
    tiles = math.ceil(scaled_w / GPT4O_TILE_SIDE) * math.ceil(scaled_h / GPT4O_TILE_SIDE)
    return GPT4O_BASE_TOKENS + GPT4O_TILE_TOKENS * tiles


# -- estimate ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    kind: str  # "sagemaker" (our endpoint), "seed" (the seed's measured configuration), "api" (GPT-4o)
    tokens_per_photo: float
    usd_per_1000: float
    total_usd: float
    total_usd_pessimistic: float | None = None
    instance_type: str | None = None
    instances: int | None = None
    profile: str | None = None
    usd_per_hour: float | None = None
    speed_basis: str | None = None
    image_tokens: float | None = None
    text_tokens: float | None = None
    answer_tokens: float | None = None
    photos_per_hour_per_instance: float | None = None
    photos_per_day_per_instance: float | None = None
    hours: float | None = None
    hours_pessimistic: float | None = None


@dataclass(frozen=True)
class Estimate:
    photos: int
    size_source: str
    max_side: int
    labels: int
    rows: list[Row]
    unreadable_count: int = 0
    unreadable_examples: tuple[str, ...] = ()
    assumptions: dict[str, Any] = field(default_factory=dict)


def endpoint_row(
    *,
    photos: int,
    instance: InstanceType,
    instances: int,
    budget: TokenBudget,
    label: str,
    kind: str = "sagemaker",
    profile: str | None = None,
    tokens_per_second: float | None = None,
) -> Row:
    tps = tokens_per_second if tokens_per_second is not None else A10G_TOKENS_PER_SECOND * instance.relative_speed
    photos_per_hour = tps * 3600 / budget.total
    usd_per_1000 = instance.usd_per_hour / photos_per_hour * 1000
    hours = photos / (photos_per_hour * instances)
    total = usd_per_1000 * photos / 1000
    return Row(
        label=label,
        kind=kind,
        tokens_per_photo=budget.total,
        usd_per_1000=usd_per_1000,
        total_usd=total,
        total_usd_pessimistic=total * PESSIMISTIC_FACTOR,
        instance_type=instance.name,
        instances=instances,
        profile=profile,
        usd_per_hour=instance.usd_per_hour,
        speed_basis="--tokens-per-second" if tokens_per_second is not None else instance.speed_basis,
        image_tokens=budget.image,
        text_tokens=budget.prompt_text,
        answer_tokens=budget.answer,
        photos_per_hour_per_instance=photos_per_hour,
        photos_per_day_per_instance=photos_per_hour * 24,
        hours=hours,
        hours_pessimistic=hours * PESSIMISTIC_FACTOR,
    )


def api_row(*, photos: int, label: str, input_tokens: float, output_tokens: float) -> Row:
    usd_per_photo = (input_tokens * GPT4O_USD_PER_M_INPUT + output_tokens * GPT4O_USD_PER_M_OUTPUT) / 1e6
    return Row(
        label=label,
        kind="api",
        tokens_per_photo=input_tokens + output_tokens,
        usd_per_1000=usd_per_photo * 1000,
        total_usd=usd_per_photo * photos,
        text_tokens=input_tokens,
        answer_tokens=output_tokens,
    )


def estimate(
    *,
    photos: int,
    sizes: SizeMix,
    taxonomy: Taxonomy,
    instance_types: Sequence[InstanceType],
    instance_counts: Sequence[int],
    profiles: Sequence[str],
    max_side: int,
    tokens_per_second: float | None = None,
) -> Estimate:
    if photos < 1:
        raise EstimateError(f"the photo count must be at least 1, got {photos}")
    if any(count < 1 for count in instance_counts):
        raise EstimateError(f"instance counts must be at least 1, got {list(instance_counts)}")
    rows: list[Row] = []
    for profile in profiles:
        budget = llava_tokens(sizes, profile, taxonomy, max_side=max_side)
        for instance in instance_types:
            for count in instance_counts:
                rows.append(
                    endpoint_row(
                        photos=photos,
                        instance=instance,
                        instances=count,
                        budget=budget,
                        label=f"{instance.name} x{count}, {profile}"
                        + (" *" if instance.speed_basis == ASSUMED and tokens_per_second is None else ""),
                        profile=profile,
                        tokens_per_second=tokens_per_second,
                    )
                )
    rows.extend(comparison_rows(photos=photos, sizes=sizes, taxonomy=taxonomy, max_side=max_side))
    return Estimate(
        photos=photos,
        size_source=sizes.source,
        max_side=max_side,
        labels=len(taxonomy.labels),
        rows=rows,
        unreadable_count=sizes.unreadable_count,
        unreadable_examples=sizes.unreadable,
        assumptions={
            "a10g_tokens_per_second": round(A10G_TOKENS_PER_SECOND, 1),
            "calibration": f"seed: {SEED_SECONDS_PER_1000:g} s / 1,000 photos at {SEED_TOKENS_PER_PHOTO:,} "
            "tokens per photo on one ml.g5.xlarge",
            "pessimistic_factor": round(PESSIMISTIC_FACTOR, 3),
            "prices_as_of": PRICES_AS_OF,
            "prices_source": PRICES_SOURCE,
            "gpt4o_usd_per_m_tokens": {"input": GPT4O_USD_PER_M_INPUT, "output": GPT4O_USD_PER_M_OUTPUT},
            "prefix_caching": "no effect: the image precedes the text in LLaVA-NeXT's chat template",
        },
    )


def comparison_rows(*, photos: int, sizes: SizeMix, taxonomy: Taxonomy, max_side: int) -> list[Row]:
    seed_budget = TokenBudget(image=0.0, prompt_text=SEED_PROMPT_TOKENS, answer=SEED_ANSWER_TOKENS)
    seed = endpoint_row(
        photos=photos,
        instance=InstanceType("ml.g5.xlarge", "A10G", 24, 4, SEED_USD_PER_HOUR, 1.0, "measured (seed)"),
        instances=1,
        budget=seed_budget,
        label="seed: ml.g5.xlarge x1, stock, measured",
        kind="seed",
        profile="stock",
    )
    prompt = estimate_text_tokens(taxonomy.prompt, GPT4O_CHARS_PER_TOKEN)
    answers = [estimate_text_tokens(c, GPT4O_CHARS_PER_TOKEN) + END_OF_ANSWER_TOKENS for c in taxonomy.choices]
    answer = sum(answers) / len(answers)
    rows = [
        seed,
        # The seed's own arithmetic: LLaVA's token count billed at GPT-4o's input price.
        api_row(
            photos=photos, label="GPT-4o, seed's arithmetic", input_tokens=SEED_TOKENS_PER_PHOTO, output_tokens=0
        ),
    ]
    for detail in ("high", "low"):
        image = sizes.mean(lambda w, h, d=detail: gpt4o_image_tokens(*fit_within(w, h, max_side), d))
        rows.append(
            api_row(
                photos=photos, label=f"GPT-4o, detail={detail}", input_tokens=image + prompt, output_tokens=answer
            )
        )
    return rows


# -- output -----------------------------------------------------------------------------------------------------

_NOTE_WIDTH = 110  # characters
_COLUMNS = ("configuration", "tokens/photo", "photos/h/inst", "$/1k photos", "backlog hours", "backlog cost")


def render_table(result: Estimate) -> str:
    header = (
        f"Labelling {result.photos:,} photos; sizes: {result.size_source}; sent at <= {result.max_side} px; "
        f"prompt with {result.labels} labels"
    )
    lines = [textwrap.fill(header, _NOTE_WIDTH), ""]
    table = [_COLUMNS]
    for row in result.rows:
        table.append(
            (
                row.label,
                f"{row.tokens_per_photo:,.0f}",
                "-" if row.photos_per_hour_per_instance is None else f"{row.photos_per_hour_per_instance:,.0f}",
                f"{row.usd_per_1000:,.3f}",
                "-" if row.hours is None else _figure(row.hours),
                "$" + _figure(row.total_usd),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]
    for index, cells in enumerate(table):
        first = cells[0].ljust(widths[0])
        rest = "  ".join(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        lines.append(f"{first}  {rest}")
        if index == 0:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    unmeasured = sorted({r.instance_type for r in result.rows if r.speed_basis == ASSUMED})
    notes = [
        f"Throughput: {A10G_TOKENS_PER_SECOND:,.0f} tokens/s per A10G, calibrated on the seed "
        f"({SEED_SECONDS_PER_1000:g} s / 1,000 photos at {SEED_TOKENS_PER_PHOTO:,} tokens). "
        f"Pessimistic (blog repo, {BLOG_SLOWEST_SECONDS_PER_1000:g} s / 1,000): hours and cost "
        f"x{PESSIMISTIC_FACTOR:.2f}.",
        f"Prices: {PRICES_SOURCE}, {PRICES_AS_OF}; override with --price-per-hour. GPT-4o: "
        f"${GPT4O_USD_PER_M_INPUT:.2f} / ${GPT4O_USD_PER_M_OUTPUT:.2f} per M input/output tokens; API rate limits "
        "not modelled.",
        "Prefix caching cannot help: the image comes before the prompt text in LLaVA-NeXT's chat template.",
    ]
    if unmeasured:
        notes.append(
            f"* Not measured, speed assumed (see --help): {', '.join(unmeasured)}. Measure, then pass "
            "--tokens-per-second."
        )
    if result.unreadable_count:
        notes.append(
            f"{result.unreadable_count:,} sampled files are unreadable and would be REJECTED by the labeller "
            "(not in the figures above); first: " + result.unreadable_examples[0]
        )
    # The table keeps its width; the notes under it wrap for a terminal.
    lines.append("")
    lines += [textwrap.fill(note, _NOTE_WIDTH, subsequent_indent="  ") for note in notes]
    return "\n".join(lines)


def _figure(value: float) -> str:
    # Whole units for backlogs, two decimals where rounding would print 0 for a small one.
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def render_json(result: Estimate) -> str:
    return json.dumps(asdict(result), indent=2)


# -- command line -----------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    types = ", ".join(f"{t.name} ${t.usd_per_hour:g}/h ({t.gpu})" for t in INSTANCE_TYPES.values())
    parser = argparse.ArgumentParser(
        prog="python -m tools.cost_estimate",
        description="Estimate the cost and duration of labelling N photos on the SageMaker endpoint.",
        epilog=(__doc__ or "").split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--photos", required=True, type=_arg(parse_count), help="how many photos to label (20000000, 20M, 1.5k)"
    )
    parser.add_argument(
        "--instance-type",
        nargs="+",
        default=[DEFAULT_INSTANCE_TYPE],
        metavar="TYPE",
        help=f"one or more SageMaker instance types, or 'all' (default {DEFAULT_INSTANCE_TYPE}). Known: {types}",
    )
    parser.add_argument(
        "--instances", nargs="+", type=_arg(_positive_int), default=[1], metavar="N", help="instance counts"
    )
    parser.add_argument(
        "--profile",
        nargs="+",
        choices=list(GRID_PINPOINTS),
        default=list(GRID_PINPOINTS),
        help=f"image-token profiles to compare (default: all; the model's own default is {DEFAULT_PROFILE})",
    )
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--size",
        action="append",
        type=_arg(parse_size),
        metavar="WxH[:WEIGHT]",
        help=f"a photo size and its share, repeatable (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})",
    )
    sizes.add_argument(
        "--photos-dir", type=Path, help="read the sizes of real photos under this folder (headers only)"
    )
    parser.add_argument(
        "--sample", type=_arg(_positive_int), default=DEFAULT_SAMPLE, help="photos sampled from --photos-dir"
    )
    parser.add_argument(
        "--max-side",
        type=_arg(_positive_int),
        default=None,
        help="long side the client shrinks photos to before sending (default: the Lambda's, 1008)",
    )
    parser.add_argument(
        "--taxonomy", type=Path, default=DEFAULT_TAXONOMY_PATH, help="taxonomy file for the prompt"
    )
    parser.add_argument(
        "--price-per-hour", type=_arg(_positive_float), help="override the $/h of the (single) instance type"
    )
    parser.add_argument(
        "--tokens-per-second",
        type=_arg(_positive_float),
        help="override the throughput of one instance (measured tokens/s, prompt + answer)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _arg(function: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return function(text)
        except EstimateError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    convert.__name__ = function.__name__
    return convert


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise EstimateError(f"{text!r} is not a whole number") from error
    if value < 1:
        raise EstimateError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise EstimateError(f"{text!r} is not a number") from error
    if not value > 0 or math.isinf(value):
        raise EstimateError(f"{text!r} must be a positive number")
    return value


def _instance_types(
    names: Sequence[str], price: float | None, tokens_per_second: float | None
) -> list[InstanceType]:
    if list(names) == ["all"]:
        names = list(INSTANCE_TYPES)
    unknown = [name for name in names if name not in INSTANCE_TYPES]
    if (price is not None or tokens_per_second is not None) and len(names) != 1:
        raise EstimateError(
            "--price-per-hour and --tokens-per-second describe one instance type; name exactly one"
        )
    if unknown and (price is None or tokens_per_second is None):
        raise EstimateError(
            f"unknown instance type {', '.join(unknown)}; known: {', '.join(INSTANCE_TYPES)} "
            "(for another type pass both --price-per-hour and --tokens-per-second)"
        )
    chosen = []
    for name in dict.fromkeys(names):
        known = INSTANCE_TYPES.get(name) or InstanceType(name, "?", 0, 0, 0.0, 1.0, "--tokens-per-second")
        if price is not None:
            known = InstanceType(**{**asdict(known), "usd_per_hour": price})
        chosen.append(known)
    return chosen


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    from classification.images import MAX_SIDE

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        instance_types = _instance_types(args.instance_type, args.price_per_hour, args.tokens_per_second)
        taxonomy = Taxonomy.load(args.taxonomy)
        if args.photos_dir is not None:
            sizes = scan_folder(args.photos_dir.expanduser(), sample=args.sample, progress=err)
        elif args.size:
            sizes = SizeMix(tuple(args.size), " + ".join(_describe_size(s, args.size) for s in args.size))
        else:
            sizes = SizeMix((PhotoSize(*DEFAULT_SIZE),), f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]} (default)")
        result = estimate(
            photos=args.photos,
            sizes=sizes,
            taxonomy=taxonomy,
            instance_types=instance_types,
            instance_counts=list(dict.fromkeys(args.instances)),
            profiles=list(dict.fromkeys(args.profile)),
            max_side=args.max_side or MAX_SIDE,
            tokens_per_second=args.tokens_per_second,
        )
    except (EstimateError, InvalidTaxonomy) as error:
        parser.print_usage(err)
        err.write(f"{parser.prog}: error: {error}\n")
        return 2
    out.write((render_json(result) if args.json else render_table(result)) + "\n")
    return 0


def _describe_size(size: PhotoSize, all_sizes: Sequence[PhotoSize]) -> str:
    if len(all_sizes) == 1:
        return f"{size.width}x{size.height}"
    share = size.weight / sum(s.weight for s in all_sizes)
    return f"{size.width}x{size.height} ({share:.0%})"


if __name__ == "__main__":
    sys.exit(main())
