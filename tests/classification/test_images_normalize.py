"""classification.images: every upload becomes an upright RGB JPEG <= 1008 px, or a readable InvalidImage."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image

from classification.contract import Taxonomy
from classification.images import (
    DEFAULT_MAX_PIXELS,
    MAX_SIDE,
    InvalidImage,
    NormalizedImage,
    normalize,
    open_rgb,
)

SAGEMAKER_PAYLOAD_LIMIT = 6 * 1024 * 1024  # bytes, real-time InvokeEndpoint


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def gradient(size: tuple[int, int]) -> Image.Image:
    """A smooth photo-like RGB image (cheap to build at 12 MP)."""
    width, height = size
    horizontal = Image.linear_gradient("L").resize((width, height))
    vertical = Image.linear_gradient("L").rotate(90).resize((width, height))
    return Image.merge("RGB", (horizontal, vertical, Image.new("L", size, 90)))


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with no pixel data: what a decompression bomb looks like."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.slow
def test_a_12_megapixel_camera_jpeg_becomes_a_1008_px_jpeg_with_the_same_aspect() -> None:
    # Given a 4000x3000 camera JPEG
    data = encode(gradient((4000, 3000)), "JPEG", quality=92)

    # When it is normalised
    result = normalize(data)

    # Then the long side is 1008 px, the aspect is 4:3, and the output is a plain RGB JPEG
    assert isinstance(result, NormalizedImage)
    assert (result.width, result.height) == (1008, 756)
    assert (result.source_format, result.source_width, result.source_height) == ("JPEG", 4000, 3000)
    decoded = Image.open(io.BytesIO(result.jpeg))
    assert (decoded.format, decoded.mode, decoded.size) == ("JPEG", "RGB", (1008, 756))


def test_jpeg_draft_mode_decodes_a_large_jpeg_within_a_pixel_budget_a_png_of_the_same_size_exceeds() -> None:
    # Given the same 2400x1800 picture (4.3 MP) as JPEG and as PNG, and a 2-MP decode budget
    picture = gradient((2400, 1800))
    jpeg, png = encode(picture, "JPEG"), encode(picture, "PNG")

    # When both are normalised under that budget
    result = normalize(jpeg, max_pixels=2_000_000)

    # Then the JPEG succeeds (libjpeg decodes it at 1/2 scale: 1.1 MP) and the PNG, which must be decoded
    # fully, is refused before its pixels are decoded
    assert (result.width, result.height) == (1008, 756)
    with pytest.raises(InvalidImage, match="too large"):
        normalize(png, max_pixels=2_000_000)


def test_small_photos_are_not_upscaled() -> None:
    result = normalize(encode(gradient((640, 480)), "PNG"))
    assert (result.width, result.height, result.source_format) == (640, 480, "PNG")


@pytest.mark.parametrize(("orientation", "expected_size"), [(1, (400, 300)), (3, (400, 300)), (6, (300, 400))])
def test_exif_orientation_is_applied_so_the_photo_is_upright(
    orientation: int, expected_size: tuple[int, int]
) -> None:
    # Given a landscape-stored photo whose left half is red, tagged with an EXIF orientation
    stored = Image.new("RGB", (400, 300), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 200, 300))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)

    # When it is normalised
    result = normalize(data)
    image = Image.open(io.BytesIO(result.jpeg))

    # Then it has the displayed size, and the stored left edge is where a viewer sees it
    assert image.size == expected_size == (result.source_width, result.source_height)
    probe = {1: (10, 150), 3: (390, 150), 6: (150, 10)}[orientation]  # 6 = rotate 90 deg clockwise to view
    red, _, blue = image.getpixel(probe)
    assert red > 200 and blue < 60
    # and no EXIF (orientation, GPS...) leaves with the photo
    assert not image.getexif()


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95)  # pure red ink
    image = open_rgb(data)
    red, green, blue = image.getpixel((32, 32))
    assert image.mode == "RGB"
    assert red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("RGBA", "PNG"), ("LA", "PNG"), ("RGBA", "WEBP"), ("P", "GIF"), ("P", "PNG")],
)
def test_transparent_areas_become_white_not_black(mode: str, fmt: str) -> None:
    # Given an image whose left half is transparent and right half opaque black
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (32, 0, 64, 64))
    if mode == "LA":
        source = rgba.convert("LA")
    elif mode == "P":
        source = rgba.convert("P")
        source.info["transparency"] = source.getpixel((0, 0))
    else:
        source = rgba
    data = encode(source, fmt, **({"transparency": source.info["transparency"]} if mode == "P" else {}))

    # When it is normalised
    image = open_rgb(data)

    # Then the transparent part is white and the opaque part stays black
    assert image.mode == "RGB"
    assert min(image.getpixel((5, 32))) > 240
    assert max(image.getpixel((60, 32))) < 20


def test_16_bit_grayscale_is_scaled_not_clipped_to_white() -> None:
    # Given a 16-bit grayscale PNG at half intensity (32768 of 65535)
    data = encode(Image.new("I;16", (32, 32), 32768), "PNG")

    # When it is normalised
    image = open_rgb(data)

    # Then it is mid-grey RGB, not 255 white
    assert image.mode == "RGB"
    assert all(120 <= channel <= 136 for channel in image.getpixel((16, 16)))


@pytest.mark.parametrize("mode", ["1", "L", "I", "F"])
def test_other_modes_become_rgb(mode: str) -> None:
    fmt = "TIFF" if mode in ("I", "F") else "PNG"
    image = open_rgb(encode(Image.new(mode, (20, 10), 1), fmt))
    assert (image.mode, image.size) == ("RGB", (20, 10))


def _truncated_jpeg() -> bytes:
    data = encode(gradient((800, 600)), "JPEG")
    return data[: len(data) // 2]


def _truncated_png() -> bytes:
    data = encode(gradient((300, 200)), "PNG")
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, this is a text file\n", "not an image"),
        (b"%PDF-1.7\n" + b"0" * 100, "not an image"),
        (_truncated_jpeg(), "truncated"),
        (_truncated_png(), "truncated"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "HEIC"),
        (encode(Image.new("RGB", (8, 8)), "PPM"), "unsupported image format PPM"),
        (encode(Image.new("RGB", (16, 16)), "ICO"), "unsupported image format ICO"),
        (png_header(200_000, 200_000), "too large"),  # 40 GP: Pillow's bomb guard refuses it at open
        (png_header(8_000, 6_000), "too large"),  # 48 MP: over our 40-MP decode budget
    ],
    ids=["empty", "text", "pdf", "truncated-jpeg", "truncated-png", "heic", "ppm", "ico", "bomb", "over-budget"],
)
def test_bad_input_raises_invalid_image_with_a_readable_reason(data: bytes, reason: str) -> None:
    pixels_limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(InvalidImage) as caught:
        normalize(data)
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert isinstance(caught.value, ValueError)
    # the process-wide Pillow guard is untouched (other code in the process relies on it)
    assert pixels_limit_before == Image.MAX_IMAGE_PIXELS


def test_programming_errors_are_not_disguised_as_bad_images() -> None:
    with pytest.raises(TypeError):
        normalize("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quality"):
        normalize(encode(gradient((10, 10)), "PNG"), quality=0)
    with pytest.raises(ValueError, match="max_side"):
        open_rgb(encode(gradient((10, 10)), "PNG"), max_side=0)


def test_worst_case_payload_stays_far_below_the_sagemaker_limit() -> None:
    # Given pure noise at the maximum output size (the least compressible photo there is)
    noise = Image.frombytes("RGB", (MAX_SIDE, MAX_SIDE), bytes(range(256)) * (MAX_SIDE * MAX_SIDE * 3 // 256))
    noise = noise.effect_spread(50)

    # When it is normalised and wrapped in the endpoint request (base64 inflates by 4/3)
    result = normalize(encode(noise, "PNG"))
    body = json.dumps(Taxonomy.load().build_request(result.jpeg)).encode()

    # Then the request is under a third of SageMaker's 6 MB real-time limit
    assert len(body) < SAGEMAKER_PAYLOAD_LIMIT / 3
    assert DEFAULT_MAX_PIXELS == 40_000_000  # documented in docs/upload-path.md's limits table
