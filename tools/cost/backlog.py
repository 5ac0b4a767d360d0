"""A saturated endpoint: $/1,000 photos and backlog hours per instance type x token profile x instance count.

Pure arithmetic: the throughput model calibrated on the seed (docs/cost-model.md, "Backlog"), plus comparison rows
for the seed's own configuration and GPT-4o.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from classification.contract import Taxonomy
from classification.image_tokens import fit_within
from tools.cost import prices
from tools.cost.inputs import EstimateError, SizeMix
from tools.cost.tokens import (
    END_OF_ANSWER_TOKENS,
    GPT4O_CHARS_PER_TOKEN,
    GPT4O_USD_PER_M_INPUT,
    GPT4O_USD_PER_M_OUTPUT,
    TokenBudget,
    estimate_text_tokens,
    gpt4o_image_tokens,
    llava_tokens,
)

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
# The blog repo's single-threaded run (one request at a time): 1,154 s per 1,000 photos, i.e. an unloaded request
# takes 1,154 / 674 = 1.71x the per-photo time of a saturated instance.
BLOG_SINGLE_STREAM_SECONDS_PER_1000 = 1154.0
SINGLE_STREAM_FACTOR = BLOG_SINGLE_STREAM_SECONDS_PER_1000 / SEED_SECONDS_PER_1000  # 1.71
# The blog repo's best batched run at concurrency 8: 700 s per 1,000 photos (96 % of the seed's 674 s).
BLOG_CONCURRENCY_8_SECONDS_PER_1000 = 700.0
# Time a photo relative to the stock profile, measured (tokens are not time: the vision encoder runs per tile and
# some costs are fixed). compact: x0.55 seconds a request for x0.48 tokens, vLLM's CPU build on the 7B
# architecture at a quarter of its depth with 12-MP photos through the Lambda's normaliser (a CPU ratio; no GPU
# measurement exists yet). The system reports calibrate on this; the backlog table above stays token-proportional.
PROFILE_TIME_RATIO = {"stock": 1.0, "compact": 0.55}

ASSUMED = "assumed, not measured"
PRICES_SOURCE = "SageMaker AI on-demand, us-east-1, tools/cost/prices.json (each price's source and date there)"


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str
    gpu_memory_gib: int
    vcpus: int
    usd_per_hour: float
    relative_speed: float  # prefill throughput relative to one A10G
    speed_basis: str


# GPU, its memory (GiB), vCPUs, prefill speed relative to one A10G and what that speed rests on; the $/h come from
# prices.json. L4 ~1.0: similar dense BF16 tensor throughput, a 72 W cap and half the memory bandwidth; L40S ~2.0:
# ~3x the tensor throughput on paper, less in practice.
_HARDWARE: dict[str, tuple[str, int, int, float, str]] = {
    "ml.g5.xlarge": ("A10G", 24, 4, 1.0, "measured (seed)"),
    "ml.g5.2xlarge": ("A10G", 24, 8, 1.0, "same GPU as ml.g5.xlarge"),
    "ml.g6.xlarge": ("L4", 24, 4, 1.0, ASSUMED),
    "ml.g6.2xlarge": ("L4", 24, 8, 1.0, ASSUMED),
    "ml.g6e.xlarge": ("L40S", 48, 4, 2.0, ASSUMED),
    "ml.g6e.2xlarge": ("L40S", 48, 8, 2.0, ASSUMED),
}
INSTANCE_TYPES: dict[str, InstanceType] = {
    name: InstanceType(name, gpu, memory, vcpus, prices.load().instance_hour(name), speed, basis)
    for name, (gpu, memory, vcpus, speed, basis) in _HARDWARE.items()
}
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"


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
            "prices_as_of": prices.load().read_on,
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
