from __future__ import annotations

import warnings
from io import BytesIO

import pytest
from PIL import Image

from imgconv_core.errors import (
    EmptyFile,
    ImageDecodeError,
    ImageTooLarge,
    NotAnImage,
    TooManyFrames,
    UnsupportedSourceFormat,
)
from imgconv_core.images.convert import ConversionOptions, convert_image
from imgconv_core.images.formats import PILLOW_FORMATS, ImageFormat
from imgconv_core.images.inspect import ImageLimits, inspect_image
from tests.support.images import (
    LIMITS,
    animation,
    encode,
    encode_animation,
    exif_with,
    gif_with_frame_extent,
    png_header_only,
    quadrants,
)

SOURCE_SAVE_FORMATS = PILLOW_FORMATS  # every source format, by its Pillow writer name


@pytest.mark.parametrize("fmt", sorted(SOURCE_SAVE_FORMATS))
def test_each_source_format_is_sniffed_from_content(fmt: str) -> None:
    data = encode(quadrants(64, 48), SOURCE_SAVE_FORMATS[fmt])
    info = inspect_image(data, LIMITS)
    assert (info.format, info.width, info.height, info.frames) == (fmt, 64, 48, 1)
    assert info.mime_type == f"image/{fmt}"


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG", "AVIF"])
def test_animation_frames_are_counted(fmt: str) -> None:
    data = encode_animation(animation(5), fmt, [100] * 5)
    assert inspect_image(data, LIMITS).frames == 5


def test_multi_page_tiff_pages_are_counted() -> None:
    data = encode_animation(animation(3), "TIFF", [0] * 3)
    assert inspect_image(data, LIMITS).frames == 3


def test_exif_rotated_jpeg_reports_displayed_size() -> None:
    data = encode(quadrants(80, 60), "JPEG", exif=exif_with(orientation=6))
    info = inspect_image(data, LIMITS)
    assert (info.width, info.height) == (60, 80)


def test_zero_byte_file() -> None:
    with pytest.raises(EmptyFile) as exc:
        inspect_image(b"", LIMITS)
    assert exc.value.code == "empty_file"


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is a text file renamed to .jpg\n",
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n",
        b"BMW is a car, not a bitmap",
        b"\x00" * 64,
        b"\xff\xd8",
    ],
    ids=["text", "pdf", "bm-text", "zeros", "two-byte-jpeg-prefix"],
)
def test_non_images_are_rejected(data: bytes) -> None:
    with pytest.raises(NotAnImage) as exc:
        inspect_image(data, LIMITS)
    assert exc.value.code == "not_an_image"


def test_damaged_header_of_a_known_format_is_a_decode_error() -> None:
    with pytest.raises(ImageDecodeError) as exc:
        inspect_image(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, LIMITS)
    assert "PNG" in exc.value.message


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10">'
            b"<rect/></svg>",
            "SVG",
        ),
        (b"<svg width='4' height='4'></svg>", "SVG"),
        (b"8BPS\x00\x01" + b"\x00" * 40, "PSD"),
        (b"P6\n4 4\n255\n" + b"\x00" * 48, "Netpbm"),
    ],
    ids=["svg-xml", "svg", "psd", "ppm"],
)
def test_known_but_unsupported_image_formats(data: bytes, name: str) -> None:
    with pytest.raises(UnsupportedSourceFormat) as exc:
        inspect_image(data, LIMITS)
    assert exc.value.code == "unsupported_source_format"
    assert name in exc.value.message


def test_type_comes_from_content_not_from_the_claimed_format() -> None:
    # PNG bytes: whatever the file name said, it is reported as PNG.
    assert inspect_image(encode(quadrants(), "PNG"), LIMITS).format == "png"


def test_over_the_pixel_limit_from_the_header_alone() -> None:
    # 100k x 100k claimed by a 33-byte file: rejected without decoding anything.
    with pytest.raises(ImageTooLarge) as exc:
        inspect_image(png_header_only(100_000, 100_000), LIMITS)
    assert exc.value.code == "image_too_large"
    assert exc.value.details["pixels"] == 10**10


def test_our_limit_decides_not_pillows_bomb_guard() -> None:
    # 400 MP is above Pillow's own DecompressionBombError threshold (~179 MP); with a
    # generous limit of ours it must be accepted, and no Pillow warning may escape.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = inspect_image(png_header_only(20_000, 20_000), ImageLimits(10**9, 10))
    assert (info.width, info.height) == (20_000, 20_000)


def test_limit_counts_frames_times_pixels() -> None:
    data = encode_animation(animation(4, (40, 30)), "GIF", [100] * 4)
    assert inspect_image(data, ImageLimits(max_pixels=4 * 1200, max_frames=10)).frames == 4
    with pytest.raises(ImageTooLarge):
        inspect_image(data, ImageLimits(max_pixels=4 * 1200 - 1, max_frames=10))


def test_too_many_frames() -> None:
    data = encode_animation(animation(4), "WEBP", [100] * 4)
    with pytest.raises(TooManyFrames) as exc:
        inspect_image(data, ImageLimits(max_pixels=10**9, max_frames=3))
    assert exc.value.code == "too_many_frames"


def test_truncated_gif_animation_is_a_decode_error_not_a_crash() -> None:
    data = encode_animation(animation(6), "GIF", [100] * 6)
    truncated = data[: len(data) // 2]
    # Counting frames stops at the cut, so the header check passes; the decode reports it.
    assert inspect_image(truncated, LIMITS).frames >= 1
    with pytest.raises(ImageDecodeError) as exc:
        convert_image(truncated, ConversionOptions(target=ImageFormat.WEBP), LIMITS)
    assert exc.value.code == "decode_failed"


def test_limits_from_settings() -> None:
    from imgconv_core.settings import Settings

    settings = Settings(mode="local", max_pixels=1234, max_frames=7)
    assert ImageLimits.from_settings(settings) == ImageLimits(1234, 7)


def test_pillow_guard_is_disabled_process_wide() -> None:
    assert Image.MAX_IMAGE_PIXELS is None


def test_gif_frames_beyond_the_logical_screen_count_toward_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 1 x 1 screen whose frame claims 60000 x 60000: Pillow would grow the canvas and
    # allocate 3.6 GB for it while opening, so the check must happen before Image.open.
    bomb = gif_with_frame_extent((1, 1), [(60_000, 60_000)])
    with monkeypatch.context() as patched:
        patched.setattr(Image, "open", lambda *a, **k: pytest.fail("opened the bomb"))
        with pytest.raises(ImageTooLarge):
            inspect_image(bomb, LIMITS)
    later_bomb = gif_with_frame_extent((10, 10), [(10, 10), (60_000, 60_000)])
    with pytest.raises(ImageTooLarge):
        inspect_image(later_bomb, LIMITS)
    with pytest.raises(ImageTooLarge):
        convert_image(later_bomb, ConversionOptions(target=ImageFormat.WEBP), LIMITS)


def test_gif_canvas_grown_by_a_frame_is_reported() -> None:
    info = inspect_image(gif_with_frame_extent((10, 10), [(10, 10), (30, 20)]), LIMITS)
    assert (info.width, info.height, info.frames) == (30, 20, 2)


def test_tiff_pages_are_limited_by_their_own_sizes() -> None:
    small, big = Image.new("L", (10, 10)), Image.new("L", (300, 300))
    data = encode(small, "TIFF", save_all=True, append_images=[big])
    info = inspect_image(data, ImageLimits(max_pixels=100 + 90_000, max_frames=10))
    assert info.frames == 2
    with pytest.raises(ImageTooLarge):
        inspect_image(data, ImageLimits(max_pixels=100 + 90_000 - 1, max_frames=10))


def test_mpo_jpeg_is_one_picture() -> None:
    # Phones store depth or gain maps as extra MPO pictures: not animation frames.
    first, second = quadrants(64, 48), Image.new("RGB", (32, 24), (9, 9, 9))
    data = encode(first, "MPO", save_all=True, append_images=[second])
    info = inspect_image(data, LIMITS)
    assert (info.format, info.frames, info.width) == ("jpeg", 1, 64)
    result = convert_image(data, ConversionOptions(target=ImageFormat.WEBP), LIMITS)
    assert getattr(Image.open(BytesIO(result.data)), "n_frames", 1) == 1
