"""Image-token profiles of LLaVA-NeXT: how many tokens a photo costs, chosen at training time.

A profile is the `image_grid_pinpoints` written into both the model's config.json and the processor config,
so the saved model carries it to serving. `stock` is llava-v1.6-mistral-7b-hf's own anyres grid (the seed's
behaviour); `compact` keeps one 336x336 tile plus the base view, ~56 % fewer tokens for a 4:3 photo.

`image_tokens(width, height, profile)` is the number of `<image>` placeholders the real processor expands one
image into (transformers' `LlavaNextProcessor._get_number_of_features`, which vLLM mirrors), in pure Python so
the Lambda and the cost tool can use it without transformers. How it works, for a photo of W x H:
1. anyres picks the pinpoint (tile grid) that keeps the most of the photo's pixels and wastes the least;
2. the photo is fitted into that grid at CLIP's 336 px tiles, 24 x 24 patches of 14 px each;
3. the padding rows/columns are dropped, every remaining patch row gets one "newline" token, and a 24 x 24
   base view of the whole photo (+1 CLS, minus 1 with the `default` feature select strategy) is added.
So the count depends on the photo's aspect ratio and on whether it is smaller than the chosen grid, not on
its file size; the processor never looks past 1,008 px (the largest pinpoint side).

Figures (stock / compact): 4:3 photo 2,340 / 1,026; 3:2 2,144 / 976; 16:9 1,948 / 926; square 2,928 / 1,176.
tests/classification/test_image_tokens.py checks this arithmetic against transformers' processor.
"""

from __future__ import annotations

from collections.abc import Sequence

GRID_PINPOINTS: dict[str, list[list[int]]] = {
    "stock": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    "compact": [[336, 336]],
}
DEFAULT_PROFILE = "stock"

# The vision tower of llava-v1.6-mistral-7b-hf (CLIP ViT-L/14 at 336 px). Pinpoints must be multiples of the
# tile side, or the model's forward pass rejects the processor's output.
TILE_SIDE = 336  # px
PATCH_SIZE = 14  # px
PATCHES_PER_SIDE = TILE_SIDE // PATCH_SIZE  # 24
# The CLS token the vision tower adds (processor `num_additional_image_tokens=1`); the model's `default`
# vision_feature_select_strategy drops it again, hence the -1 in `image_tokens`.
NUM_ADDITIONAL_IMAGE_TOKENS = 1

Pinpoints = Sequence[Sequence[int]]


def grid_pinpoints(profile: str | Pinpoints = DEFAULT_PROFILE) -> list[tuple[int, int]]:
    """The (height, width) pinpoints of a profile name or of an explicit list; ValueError if unusable."""
    if isinstance(profile, str):
        if profile not in GRID_PINPOINTS:
            raise ValueError(f"unknown image-token profile {profile!r}; known: {', '.join(GRID_PINPOINTS)}")
        raw: Pinpoints = GRID_PINPOINTS[profile]
    else:
        raw = profile
    pinpoints: list[tuple[int, int]] = []
    for point in raw:
        if len(point) != 2 or not all(isinstance(side, int) and side > 0 for side in point):
            raise ValueError(f"a pinpoint is [height, width] in positive integer px, got {point!r}")
        if point[0] % TILE_SIDE or point[1] % TILE_SIDE:
            raise ValueError(
                f"pinpoint {list(point)} is not a multiple of the vision tile ({TILE_SIDE} px); "
                "the model would reject the processor's output"
            )
        pinpoints.append((point[0], point[1]))
    if not pinpoints:
        raise ValueError("a profile needs at least one pinpoint")
    return pinpoints


def best_resolution(width: int, height: int, pinpoints: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The (height, width) pinpoint anyres picks: most photo pixels kept, then least padding.

    A line-for-line port of transformers' `select_best_resolution`, keeping its float expressions so ties
    break exactly the same way.
    """
    best_fit = pinpoints[0]
    max_effective_resolution = 0
    min_wasted_resolution = float("inf")
    for pin_height, pin_width in pinpoints:
        scale = min(pin_width / width, pin_height / height)
        downscaled_width, downscaled_height = int(width * scale), int(height * scale)
        effective_resolution = min(downscaled_width * downscaled_height, width * height)
        wasted_resolution = (pin_width * pin_height) - effective_resolution
        if effective_resolution > max_effective_resolution or (
            effective_resolution == max_effective_resolution and wasted_resolution < min_wasted_resolution
        ):
            max_effective_resolution = effective_resolution
            min_wasted_resolution = wasted_resolution
            best_fit = (pin_height, pin_width)
    return best_fit


def image_tokens(width: int, height: int, profile: str | Pinpoints = DEFAULT_PROFILE) -> int:
    """Image tokens the LLaVA-NeXT processor spends on a `width` x `height` photo (as the server receives it)."""
    _check_size(width, height)
    pin_height, pin_width = best_resolution(width, height, grid_pinpoints(profile))
    current_height = PATCHES_PER_SIDE * (pin_height // TILE_SIDE)
    current_width = PATCHES_PER_SIDE * (pin_width // TILE_SIDE)
    # Same expressions as the processor's `_get_unpadded_features` (round(..., 7) included): a different
    # but "equivalent" formula disagrees by one patch row on some sizes.
    if width / height > current_width / current_height:
        new_height = int(round(height * (current_width / width), 7))
        current_height -= ((current_height - new_height) // 2) * 2
    else:
        new_width = int(round(width * (current_height / height), 7))
        current_width -= ((current_width - new_width) // 2) * 2
    unpadded = current_height * current_width
    newlines = current_height
    base = PATCHES_PER_SIDE * PATCHES_PER_SIDE + NUM_ADDITIONAL_IMAGE_TOKENS
    return unpadded + newlines + base - 1


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size a photo has after the client's downscale to `max_side` (never upscaled).

    `classification.images.normalize` (applied by the Lambda before every request) resizes with this function,
    so the token count is that of the pixels the endpoint really receives.
    """
    _check_size(width, height)
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be a positive integer, got {max_side!r}")
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"photo {name} must be a positive integer number of pixels, got {value!r}")


__all__ = [
    "DEFAULT_PROFILE",
    "GRID_PINPOINTS",
    "NUM_ADDITIONAL_IMAGE_TOKENS",
    "PATCHES_PER_SIDE",
    "PATCH_SIZE",
    "TILE_SIDE",
    "best_resolution",
    "fit_within",
    "grid_pinpoints",
    "image_tokens",
]
