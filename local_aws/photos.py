"""Generated photos whose label is visible in the pixels (one colour per label, with noise): a tiny model learns
them in minutes, so accuracy measures the pipeline, not the model."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from classification.contract import Taxonomy

Colour = tuple[int, int, int]
# 27 colours 120 levels apart per channel: far enough apart to survive noise, JPEG and the CLIP resize.
PALETTE: tuple[Colour, ...] = tuple((r, g, b) for r in (0, 120, 240) for g in (0, 120, 240) for b in (0, 120, 240))
NOISE_STD = 25  # per-pixel colour noise, so no two photos are alike
TRAINING_PHOTO_SIZE = (
    160,
    120,
)  # small photos train fast: the processor scales every photo to 336-px tiles anyway
HOTELS = ("hotel-0001", "hotel-0002", "hotel-0003")
# Camera-like sizes and formats: landscape, portrait, wide, a PNG; the Lambda normalises them all.
_UPLOAD_SHAPES = (((800, 600), "JPEG"), ((600, 800), "JPEG"), ((1280, 720), "JPEG"), ((640, 480), "PNG"))


def label_colours(taxonomy: Taxonomy) -> dict[str, Colour]:
    """One palette colour per label, spread over the palette; ValueError beyond 27 labels."""
    count = len(taxonomy.labels)
    if count > len(PALETTE):
        raise ValueError(f"the demo palette distinguishes {len(PALETTE)} labels, the taxonomy has {count}")
    return {label: PALETTE[index * len(PALETTE) // count] for index, label in enumerate(taxonomy.labels)}


def colour_photo(
    colour: Colour, rng: np.random.Generator, size: tuple[int, int] = TRAINING_PHOTO_SIZE
) -> Image.Image:
    """A `size` (width, height) photo of `colour` with per-pixel noise."""
    width, height = size
    pixels = np.array(colour, dtype=float)[None, None, :] + rng.normal(0, NOISE_STD, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"))


def encode(image: Image.Image, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def write_training_photos(root: Path, taxonomy: Taxonomy, per_label: int, rng: np.random.Generator) -> Path:
    """A label-folder source for training_job.build_dataset: root/<label>/<n>.jpg."""
    from training_job.build_dataset import folder_key

    colours = label_colours(taxonomy)
    for label in taxonomy.labels:
        folder = root / folder_key(label).replace(" ", "_")  # `Staircase/Elevator` cannot be a folder name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_label):
            (folder / f"{index:03d}.jpg").write_bytes(encode(colour_photo(colours[label], rng)))
    return root


@dataclass(frozen=True)
class Upload:
    key: str
    body: bytes
    expected_label: str | None  # None: a bad file that must be REJECTED, or a photo of two labels (`mixes`)
    mixes: tuple[str, str] | None = None  # a photo half one label's colour, half another's: the model is unsure


def make_uploads(
    taxonomy: Taxonomy,
    per_label: int,
    rng: np.random.Generator,
    prefix: str,
    colours: Mapping[str, Colour] | None = None,
) -> list[Upload]:
    """New photos of every label (never seen in training) plus four bad files, spread over the hotels.

    `colours` (label -> RGB) must be the ones the served model learnt; default: the demo's own palette.
    """
    colours = colours or label_colours(taxonomy)
    uploads = []
    for label_index, label in enumerate(taxonomy.labels):
        for index in range(per_label):
            size, image_format = _UPLOAD_SHAPES[(label_index + index) % len(_UPLOAD_SHAPES)]
            hotel = HOTELS[(label_index + index) % len(HOTELS)]
            # Spaces and a slash-free label in the key: S3 URL-encodes keys in events, the handler decodes them.
            name = f"{label.replace('/', '-')} {index}.{'png' if image_format == 'PNG' else 'jpg'}"
            body = encode(colour_photo(colours[label], rng, size), image_format)
            uploads.append(Upload(f"{prefix}{hotel}/{name}", body, label))
    good = encode(colour_photo(PALETTE[0], rng, (640, 480)))
    uploads += [
        Upload(f"{prefix}{HOTELS[0]}/truncated.jpg", good[: len(good) // 3], None),
        Upload(f"{prefix}{HOTELS[1]}/empty.jpg", b"", None),
        Upload(f"{prefix}{HOTELS[2]}/notes.txt", b"check-in from 3 pm, breakfast 7-10\n", None),
        Upload(f"{prefix}{HOTELS[0]}/brochure.pdf", b"%PDF-1.4\n% not a photo\n", None),
    ]
    return uploads


def mixed_photo(
    first: Colour, second: Colour, rng: np.random.Generator, size: tuple[int, int] = (640, 480)
) -> Image.Image:
    """A photo whose left half has one label's colour and right half another's, with the same noise."""
    width, height = size
    base = np.empty((height, width, 3))
    base[:, : width // 2] = first
    base[:, width // 2 :] = second
    pixels = base + rng.normal(0, NOISE_STD, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"))


def unsure_uploads(
    taxonomy: Taxonomy,
    count: int,
    rng: np.random.Generator,
    prefix: str,
    colours: Mapping[str, Colour] | None = None,
) -> list[Upload]:
    """`count` photos that mix two labels' features (neighbouring labels of the taxonomy, in turn): the photos a
    model trained on one colour per label cannot be sure of, so the demo's review page has work."""
    colours = colours or label_colours(taxonomy)
    labels = list(taxonomy.labels)
    uploads = []
    for index in range(count):
        first, second = labels[index % len(labels)], labels[(index + 1) % len(labels)]
        name = f"mixed {first.replace('/', '-')} + {second.replace('/', '-')} {index}.jpg"
        body = encode(mixed_photo(colours[first], colours[second], rng))
        uploads.append(Upload(f"{prefix}{HOTELS[index % len(HOTELS)]}/{name}", body, None, mixes=(first, second)))
    return uploads


__all__ = [
    "HOTELS",
    "NOISE_STD",
    "PALETTE",
    "Colour",
    "Upload",
    "colour_photo",
    "encode",
    "label_colours",
    "make_uploads",
    "mixed_photo",
    "unsure_uploads",
    "write_training_photos",
]
