"""The one image normalisation: any upload -> an upright RGB JPEG whose long side is at most 1,008 px.

The Lambda, the dataset builder, evaluation and the local serving backend all call `normalize`/`open_rgb`, so
the pixels the model was trained on are prepared exactly like the pixels it is asked about in production.

Why these steps:
- 1,008 px: the LLaVA-NeXT processor never looks past 1,008 px (its largest anyres pinpoint), so anything
  larger only inflates the request; anything >= 672 px yields the same image tokens.
- JPEG draft mode: libjpeg decodes directly at 1/2, 1/4 or 1/8 scale, so a 12-MP photo is never fully
  decoded (measured: 4.3x less peak memory, 2.8x faster than decode-then-resize; benchmarks/bench_normalize.py).
- Decompression bombs: the pixel count that will actually be decoded (after draft) is checked against
  `max_pixels` before any pixel is decoded. Pillow's process-wide `Image.MAX_IMAGE_PIXELS` is left alone (other
  code in the process relies on it); it still applies as an outer bound on the declared size.
- Re-encoding always (even a small RGB JPEG) keeps training and production identical and strips metadata
  such as GPS coordinates before the photo leaves the account.

Limits: input formats JPEG/MPO, PNG, WebP, GIF (first frame), BMP, TIFF (first page), AVIF; HEIC and anything
else is rejected with a reason. Output: at most 1,008 x 1,008 px; a worst-case (pure noise) 1,008 x 1,008 JPEG at
quality 90 is ~0.9 MB (1.2 MB as base64), far below SageMaker's 6 MB real-time payload limit.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image, ImageCms, UnidentifiedImageError

from classification.image_tokens import fit_within

MAX_SIDE = 1008  # px: the largest side the LLaVA-NeXT processor uses (its 1008x336 pinpoint)
# Pixels decoded into memory at most (after JPEG draft scaling). 40 MP of RGBA is 160 MB; with the mode
# conversion copies the peak stays under ~0.5 GB, which fits a 1-GB Lambda. A JPEG can declare up to 64x this
# (draft decodes at 1/8 scale); other formats are decoded at full size, so for them it is the source limit.
DEFAULT_MAX_PIXELS = 40_000_000
JPEG_QUALITY = 90  # visually lossless for the model; ~150-250 kB for a 1008x756 photo
# MPO (multi-picture phone JPEGs) is opened by the JPEG plugin and reported as "MPO".
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
_WHITE = (255, 255, 255)
_RESIZABLE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "CMYK", "I", "F"})
# Decoder failures on corrupt input surface as any of these; MemoryError is deliberately absent (a transient
# resource fault, not a property of the file).
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)


class InvalidImage(ValueError):
    """The bytes cannot become a model input; `reason` is a human-readable sentence stored with the item."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class NormalizedImage:
    jpeg: bytes
    width: int
    height: int
    source_format: str
    # As displayed, i.e. after the EXIF orientation is applied (a portrait phone photo is taller than wide).
    source_width: int
    source_height: int


def open_rgb(data: bytes, *, max_side: int = MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `data` into an upright RGB image whose long side is <= max_side; InvalidImage on bad input."""
    return _decode(data, max_side=max_side, max_pixels=max_pixels)[0]


def normalize(
    data: bytes,
    *,
    max_side: int = MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    quality: int = JPEG_QUALITY,
) -> NormalizedImage:
    """`open_rgb` and re-encode as a baseline JPEG without metadata."""
    if not 1 <= quality <= 95:
        raise ValueError(f"quality must be in 1..95 (Pillow's useful range), got {quality}")
    image, source_format, source_size = _decode(data, max_side=max_side, max_pixels=max_pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return NormalizedImage(
        jpeg=buffer.getvalue(),
        width=image.width,
        height=image.height,
        source_format=source_format,
        source_width=source_size[0],
        source_height=source_size[1],
    )


def _decode(data: bytes, *, max_side: int, max_pixels: int) -> tuple[Image.Image, str, tuple[int, int]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"image data must be bytes, got {type(data).__name__}")
    if max_side < 1 or max_pixels < 1:
        raise ValueError(f"max_side and max_pixels must be positive, got {max_side} and {max_pixels}")
    if len(data) == 0:
        raise InvalidImage("empty file (0 bytes)")
    image = _open(bytes(data))
    source_format = image.format or "unknown"
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"{source_format} declares an empty size {width}x{height}")
    try:
        orientation = int(image.getexif().get(0x0112, 1))
    except _DECODE_ERRORS:
        orientation = 1  # unreadable EXIF must not reject an otherwise good photo
    # Orientations 5-8 swap the axes: what the viewer sees is height x width.
    displayed = (height, width) if orientation in (5, 6, 7, 8) else (width, height)

    # The one downscale rule, shared with the token arithmetic so cost estimates count the pixels really sent.
    target = fit_within(width, height, max_side)
    if source_format in ("JPEG", "MPO") and target != (width, height):
        # Only changes `size` and the decoder's scale; nothing is decoded yet.
        image.draft(None, target)
    decoded_pixels = image.width * image.height
    if decoded_pixels > max_pixels:
        raise InvalidImage(
            f"image is too large: {width}x{height} {source_format} would decode {decoded_pixels:,} pixels, "
            f"the limit is {max_pixels:,}"
        )
    try:
        image.load()
        # Resize before the colour conversion where Pillow can resize the mode (alpha is premultiplied while
        # resizing): compositing or ICC-converting a 12-MP image would cost ~2.5x the memory of the resize.
        if image.mode == "P":
            image = image.convert("RGBA" if _has_alpha(image) else "RGB")
        elif image.mode not in _RESIZABLE_MODES:
            image = _to_rgb(image)
        if image.size != target:
            image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
        image = _to_rgb(image)
        image = _apply_orientation(image, orientation)
    except InvalidImage:
        raise
    except _DECODE_ERRORS as error:
        raise InvalidImage(f"corrupt or truncated {source_format} image: {_describe(error)}") from error
    return image, source_format, displayed


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as error:
        raise InvalidImage(f"image is too large (decompression bomb guard): {error}") from error
    except (UnidentifiedImageError, *_DECODE_ERRORS) as error:
        raise InvalidImage(_unsupported_reason(data, error)) from error


def _unsupported_reason(data: bytes, error: Exception) -> str:
    # ISO-BMFF brands at offset 8: iPhones upload HEIC, which Pillow cannot decode without a plugin.
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        return "unsupported image format HEIC/HEIF (convert to JPEG before upload)"
    try:
        # Header parse only (no decode) of a format we refuse, to name it in the reason.
        with Image.open(io.BytesIO(data)) as other:
            return f"unsupported image format {other.format} (accepted: {', '.join(ALLOWED_FORMATS)})"
    except Exception:
        pass
    if isinstance(error, UnidentifiedImageError):
        return f"not an image: no accepted image format recognised in the first bytes {data[:8]!r}"
    return f"unreadable image header: {_describe(error)}"


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "P":
        image = image.convert("RGBA" if _has_alpha(image) else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white (how a browser shows the photo on a white page), not black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise InvalidImage(f"unsupported colour mode {mode}") from error


def _has_alpha(image: Image.Image) -> bool:
    return "transparency" in image.info or (image.palette is not None and image.palette.mode == "RGBA")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    profile = image.info.get("icc_profile")
    if profile:
        try:
            # Print CMYK converted naively is oversaturated; the embedded profile gives the intended colours.
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile falls back to the naive conversion rather than rejecting the photo
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    # convert("RGB") clips 16-bit values at 255 (a near-white picture); scale into 0..255 instead.
    if image.mode.startswith("I;16"):
        image = image.convert("I")
    if image.mode == "F":
        low, high = image.getextrema()
        span = float(high) - float(low) or 1.0
        return image.point(lambda v: (v - low) * (255.0 / span)).convert("L").convert("RGB")
    _, high = image.getextrema()
    if isinstance(high, (int, float)) and high > 255:
        image = image.point(lambda v: v * (1 / 256))
    return image.convert("L").convert("RGB")


def _apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return image.transpose(method) if method is not None else image


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "JPEG_QUALITY",
    "MAX_SIDE",
    "InvalidImage",
    "NormalizedImage",
    "normalize",
    "open_rgb",
]
