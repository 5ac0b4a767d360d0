"""The pure-Python image-token arithmetic against the real LLaVA-NeXT processor, built offline."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from classification import images
from classification.image_tokens import (
    DEFAULT_PROFILE,
    GRID_PINPOINTS,
    fit_within,
    grid_pinpoints,
    image_tokens,
)

# REFERENCE.md's table, measured with the real llava-v1.6-mistral-7b-hf processor.
KNOWN_COUNTS = [
    # (width, height, stock, compact)
    (550, 412, 2340, 1026),
    (4000, 3000, 2340, 1026),
    (1500, 1000, 2144, 976),
    (1920, 1080, 1948, 926),
    (672, 672, 2928, 1176),
]
KNOWN_CLIENT_336 = [(4000, 3000, 1368), (1500, 1000, 1464), (1920, 1080, 1608), (672, 672, 1176)]


def _random_sizes(count: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    sizes: list[tuple[int, int]] = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.5:  # ordinary photos
            sizes.append((rng.randint(200, 6000), rng.randint(200, 6000)))
        elif kind < 0.8:  # small thumbnails, where padding and rounding dominate
            sizes.append((rng.randint(1, 700), rng.randint(1, 700)))
        else:  # panoramas and tall screenshots (aspect up to 1:12)
            long_side, short_side = rng.randint(600, 8000), rng.randint(50, 700)
            sizes.append((long_side, short_side) if rng.random() < 0.5 else (short_side, long_side))
    return sizes


def _processor(pinpoints: list[list[int]]):  # -> LlavaNextProcessor
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlavaNextProcessor, PreTrainedTokenizerFast
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    # A three-word tokenizer is enough: only the number of expanded `<image>` placeholders is counted.
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<pad>": 1, "<image>": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    # The settings of llava-v1.6-mistral-7b-hf's processor_config.json / preprocessor_config.json.
    image_processor = LlavaNextImageProcessorPil(
        image_grid_pinpoints=pinpoints,
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


@pytest.fixture(scope="module")
def processors() -> dict[str, object]:
    return {name: _processor(pinpoints) for name, pinpoints in GRID_PINPOINTS.items()}


def _processor_count(processor, width: int, height: int) -> int:
    encoded = processor(text="<image>", images=Image.new("RGB", (width, height)), return_tensors="np")
    return int((encoded["input_ids"] == processor.image_token_id).sum())


# -- the arithmetic alone -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "stock", "compact"), KNOWN_COUNTS)
def test_known_photo_sizes_cost_the_measured_tokens(width: int, height: int, stock: int, compact: int) -> None:
    # Given a photo size measured with the real processor
    # When its image tokens are counted for each profile
    # Then they are the measured figures
    assert image_tokens(width, height, "stock") == stock
    assert image_tokens(width, height, "compact") == compact
    assert image_tokens(width, height) == image_tokens(width, height, DEFAULT_PROFILE)


@pytest.mark.parametrize(("width", "height", "tokens"), KNOWN_CLIENT_336)
def test_client_resize_to_336_costs_the_measured_tokens(width: int, height: int, tokens: int) -> None:
    # Given a photo the client shrinks to a 336-px long side before sending it
    # When the stock processor counts the shrunk photo
    # Then it costs the measured figure (smaller photos select a smaller grid)
    assert image_tokens(*fit_within(width, height, 336), "stock") == tokens


def test_portrait_and_landscape_differ_because_newlines_follow_rows() -> None:
    # Given the same 16:9 photo upright and rotated
    # When both are counted
    # Then the portrait one costs more: each patch row carries a newline token
    assert image_tokens(1920, 1080) == 1948
    assert image_tokens(1080, 1920) == 1968


def test_explicit_pinpoints_match_the_named_profile() -> None:
    assert image_tokens(1500, 1000, [[336, 336]]) == image_tokens(1500, 1000, "compact")
    assert grid_pinpoints("stock") == [tuple(point) for point in GRID_PINPOINTS["stock"]]


def test_fit_within_only_ever_shrinks() -> None:
    assert fit_within(4000, 3000, 1008) == (1008, 756)
    assert fit_within(1920, 1080, 336) == (336, 189)
    assert fit_within(500, 300, 1008) == (500, 300)
    assert fit_within(100_000, 1, 1008) == (1008, 1)  # a side never rounds to 0


@pytest.mark.parametrize(
    ("width", "height", "profile", "message"),
    [
        (0, 100, "stock", "width must be a positive integer"),
        (100, -1, "stock", "height must be a positive integer"),
        (100.0, 100, "stock", "width must be a positive integer"),
        (True, 100, "stock", "width must be a positive integer"),
        (100, 100, "tiny", "unknown image-token profile 'tiny'; known: stock, compact"),
        (100, 100, [[300, 300]], "not a multiple of the vision tile"),
        (100, 100, [[336]], "a pinpoint is [height, width]"),
        (100, 100, [], "at least one pinpoint"),
    ],
)
def test_bad_input_is_refused_with_a_reason(width: object, height: object, profile: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        image_tokens(width, height, profile)  # type: ignore[arg-type]


def test_fit_within_refuses_a_bad_max_side() -> None:
    with pytest.raises(ValueError, match="max_side must be a positive integer"):
        fit_within(100, 100, 0)


def test_fit_within_rounds_like_the_lambda_normalisation() -> None:
    # Given photos of awkward sizes that the Lambda's normalisation downsizes
    # When normalize() and fit_within() each compute the size sent to the endpoint
    # Then they agree to the pixel, so the cost tool counts the tokens of what is really sent
    for width, height in [(1009, 757), (3001, 2001), (1023, 1), (2017, 1511), (640, 480)]:
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (90, 120, 150)).save(buffer, format="PNG")
        normalized = images.normalize(buffer.getvalue())
        assert (normalized.width, normalized.height) == fit_within(width, height, images.MAX_SIDE)


# -- against transformers' processor ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("profile", list(GRID_PINPOINTS))
def test_arithmetic_equals_the_processor_on_real_images(processors: dict[str, object], profile: str) -> None:
    # Given real images of many sizes (the measured table plus random ones, thumbnails and panoramas)
    # When the processor expands `<image>` for each and our arithmetic counts the same size
    # Then the counts are identical: no off-by-one that vLLM would reject as a feature/token mismatch
    sizes = [(w, h) for w, h, _, _ in KNOWN_COUNTS if w * h <= 2_000_000] + [
        (w, h) for w, h in _random_sizes(40, seed=5) if w * h <= 3_000_000
    ]
    for width, height in sizes:
        assert image_tokens(width, height, profile) == _processor_count(processors[profile], width, height), (
            f"{width}x{height} {profile}"
        )


@pytest.mark.slow
def test_arithmetic_equals_the_processor_over_thousands_of_sizes(processors: dict[str, object]) -> None:
    # Given 3,000 sizes per profile (too many to render as images)
    # When the processor's own size-only count (`_get_num_multimodal_tokens`, what vLLM's integration
    # calls; the test above shows it equals the expanded prompt) is asked for them
    # Then our arithmetic agrees on every one
    sizes = _random_sizes(3000, seed=11)
    for profile, processor in processors.items():
        expected = processor._get_num_multimodal_tokens(image_sizes=[(h, w) for w, h in sizes]).num_image_tokens
        mismatches = [
            (w, h, ours, theirs)
            for (w, h), theirs in zip(sizes, expected, strict=True)
            if (ours := image_tokens(w, h, profile)) != theirs
        ]
        assert not mismatches, f"{profile}: {mismatches[:5]}"
