"""Image tokens per photo with the real llava-v1.6-mistral-7b-hf processor settings, for both profiles.

The processor is built offline with the real geometry (336-px crop, 14-px patches, `default` selection with one
extra token) and the tiny tokenizer; the count depends only on those settings, not on the vocabulary.
"""

from __future__ import annotations

import pytest
from PIL import Image

from classification.contract import Taxonomy
from classification.image_tokens import GRID_PINPOINTS
from training_job.tiny_model import CLIP_MEAN, CLIP_STD, IMAGE_TOKEN, build_tokenizer


def real_processor(profile: str, taxonomy: Taxonomy):  # -> LlavaNextProcessor
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        image_grid_pinpoints=GRID_PINPOINTS[profile],
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(taxonomy),
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


@pytest.mark.parametrize(
    ("profile", "size", "expected"),
    [
        ("stock", (800, 600), 2340),
        ("compact", (800, 600), 1026),
        ("stock", (1008, 756), 2340),  # what classification.images.normalize sends for a 4:3 photo
        ("compact", (1008, 756), 1026),
        ("stock", (1920, 1080), 1948),
        ("compact", (1920, 1080), 926),
    ],
)
def test_profile_token_counts_match_the_real_processor(
    profile: str, size: tuple[int, int], expected: int, taxonomy: Taxonomy
) -> None:
    # Given the real processor settings with the profile's pinpoints
    processor = real_processor(profile, taxonomy)

    # When one photo is prepared with the prompt
    inputs = processor(images=[Image.new("RGB", size, "blue")], text=[f"{IMAGE_TOKEN}\n{taxonomy.prompt}"])

    # Then it costs the measured number of image tokens
    image_token_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert inputs["input_ids"][0].count(image_token_id) == expected
