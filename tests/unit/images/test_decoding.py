"""Which failures are the file's (decode_failed) and which are bugs (raised as they are)."""

from __future__ import annotations

import pytest
from PIL import Image, TiffImagePlugin, TiffTags

from imgconv_core.errors import ImageDecodeError
from imgconv_core.images import frames
from imgconv_core.images.convert import ConversionOptions, convert_image
from imgconv_core.images.formats import ImageFormat
from imgconv_core.images.inspect import inspect_image
from tests.support.images import (
    LIMITS,
    RED,
    close,
    decode,
    encode,
    gif_from_frames,
    quadrants,
    rgb_at,
    tiff_with_tag_value,
    tiff_without_tag,
)

COMPRESSION, IMAGE_WIDTH = 259, 256


def two_pages() -> bytes:
    return encode(quadrants(), "TIFF", save_all=True, append_images=[quadrants()])


@pytest.mark.parametrize(
    ("damaged", "pillow_raises"),
    [
        # Pillow raises these two on damaged TIFF pages: they are the file's fault here.
        (lambda: tiff_with_tag_value(two_pages(), 1, COMPRESSION, 12_345), KeyError),
        (lambda: tiff_without_tag(two_pages(), 1, IMAGE_WIDTH), TypeError),
    ],
    ids=["unknown-compression", "no-width"],
)
def test_pillow_errors_that_look_like_bugs_are_decode_errors_while_reading(
    damaged: object, pillow_raises: type[Exception]
) -> None:
    data = damaged()  # type: ignore[operator]
    for call in (
        lambda: inspect_image(data, LIMITS),
        lambda: convert_image(data, ConversionOptions(target=ImageFormat.PNG), LIMITS),
    ):
        with pytest.raises(ImageDecodeError) as exc:
            call()
        assert exc.value.code == "decode_failed"
        assert isinstance(exc.value.__context__, pillow_raises)


def damaged_av1_payload() -> bytes:
    """A valid AVIF container whose coded picture (the `mdat` payload) is overwritten."""
    data = encode(quadrants(), "AVIF")
    payload = data.index(b"mdat") + 4 + 8  # past the box type and the first bytes
    return data[:payload] + b"\xff" * (len(data) - payload)


def test_a_damaged_avif_picture_raises_runtime_error_and_is_a_decode_error() -> None:
    # Pillow's AVIF decoder raises RuntimeError ("Decoding of color planes failed") for a
    # picture libavif cannot decode: why DECODE_ERRORS holds RuntimeError.
    data = damaged_av1_payload()
    with pytest.raises(ImageDecodeError) as exc:
        convert_image(data, ConversionOptions(target=ImageFormat.PNG), LIMITS)
    assert exc.value.code == "decode_failed"
    assert isinstance(exc.value.__context__, RuntimeError)


def test_a_bug_in_our_pixel_code_is_raised_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise TypeError("a bug of ours")

    monkeypatch.setattr(frames, "to_target_mode", broken)
    data = encode(quadrants(), "PNG")
    with pytest.raises(TypeError, match="a bug of ours"):
        convert_image(data, ConversionOptions(target=ImageFormat.JPEG), LIMITS)


def test_a_bug_in_the_encoder_call_is_raised_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise KeyError("a bug of ours")

    data = encode(quadrants(), "PNG")
    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(KeyError):
        convert_image(data, ConversionOptions(target=ImageFormat.WEBP), LIMITS)


def test_big_endian_sixteen_bit_tiff_to_jpeg_is_not_called_corrupt() -> None:
    # The case: Pillow's "point operation not supported for this mode" was caught
    # and reported as a truncated or corrupt file.
    data = encode(Image.new("I", (8, 8), 40_000).convert("I;16B"), "TIFF")
    source = decode(data)
    assert source.mode == "I;16B"
    assert source.convert("I").getpixel((4, 4)) == 40_000
    for target in (ImageFormat.JPEG, ImageFormat.WEBP):
        out = decode(convert_image(data, ConversionOptions(target=target), LIMITS).data)
        assert close(rgb_at(out, (4, 4)), (156, 156, 156), 3)  # 40000 / 256


def test_a_gif_frame_pillow_leaves_without_a_palette_is_a_decode_error() -> None:
    data = gif_from_frames(
        (8, 8),
        [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), (0, 0, 200))],
        first_without_colours=True,
    )
    with pytest.raises(ImageDecodeError) as exc:
        convert_image(data, ConversionOptions(target=ImageFormat.PNG), LIMITS)
    assert "palette" in exc.value.message


def test_exif_tags_of_the_wrong_type_are_dropped_not_fatal() -> None:
    # Artist (315) is ASCII; a SHORT there passes Pillow's EXIF writer but not libtiff's.
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[315] = 3
    tags.tagtype[315] = TiffTags.SHORT
    data = encode(quadrants(), "TIFF", tiffinfo=tags)
    options = ConversionOptions(target=ImageFormat.TIFF, strip_metadata=False)
    out = decode(convert_image(data, options, LIMITS).data)
    assert close(rgb_at(out, (5, 5)), RED, 0)
    assert 315 not in out.getexif()
