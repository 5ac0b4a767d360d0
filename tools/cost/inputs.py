"""Photo sizes and counts as a user gives them: `--size`, `--photos`, or a folder of real photos (headers only)."""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

DEFAULT_SIZE = (4000, 3000)  # a 12-MP 4:3 camera photo; the aspect ratio, not the pixels, sets the tokens
DEFAULT_SAMPLE = 2000  # photos whose headers are read from --photos-dir
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"})
PROGRESS_INTERVAL = 0.5  # seconds between progress lines


class EstimateError(ValueError):
    """An input the estimate cannot use; the message says which and why."""


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


# -- command-line values ---------------------------------------------------------------------------------------


def argument(function: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return function(text)
        except EstimateError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    convert.__name__ = function.__name__
    return convert


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise EstimateError(f"{text!r} is not a whole number") from error
    if value < 1:
        raise EstimateError(f"{text!r} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise EstimateError(f"{text!r} is not a number") from error
    if not value > 0 or math.isinf(value):
        raise EstimateError(f"{text!r} must be a positive number")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise EstimateError(f"{text!r} is not a number") from error
    if not value >= 0 or math.isinf(value):
        raise EstimateError(f"{text!r} must be a non-negative number")
    return value
