"""Every pixel mode Pillow decodes, converted to every target: right colours, depth kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from PIL import Image, ImageCms, TiffImagePlugin

from imgconv_core.images.convert import ConversionOptions, convert_image
from imgconv_core.images.formats import ImageFormat
from imgconv_core.images.profiles import PROFILES
from tests.support.images import (
    LIMITS,
    close,
    decode,
    encode,
    quadrant_colours,
    quadrants,
    tiff_with_associated_alpha,
)

SIZE = (64, 48)
# Colours are compared at the centres of flat quadrants. A lossless target differs only by
# rounding in mode conversions (measured: at most 1). A lossy one at its default quality keeps
# a flat area within a few levels (measured: at most 2, AVIF); 8 leaves room for another
# libjpeg/libwebp/libavif build, and stays far below what a wrong conversion gives: the grey
# quadrants are 76, 150, 29 and 255 (a BT.709 instead of a BT.601 grey is 54, not 76), and a
# swapped channel moves a primary by 255.
LOSSLESS_TOLERANCE = 2
LOSSY_TOLERANCE = 8
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def _colour() -> Image.Image:
    return quadrants(*SIZE)


def _grey() -> Image.Image:
    return _colour().convert("L")  # quadrants of 76, 150, 29 and 255


def _wide(mode: str) -> Image.Image:
    """The grey quadrants at 16 bits (v * 257, so v is the 8-bit value), in `mode`."""
    wide = _grey().convert("I").point(lambda v: v * 257)
    return wide if mode == "I" else wide.convert(mode)


def _opaque(im: Image.Image, mode: str) -> Image.Image:
    return Image.merge(mode, (*im.split(), Image.new("L", im.size, 255)))


def _lab() -> Image.Image:
    srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
    lab_image = ImageCms.applyTransform(_colour(), ImageCms.buildTransform(srgb, lab, "RGB", "LAB"))
    assert lab_image is not None
    return lab_image


def _lab_shown() -> Image.Image:
    """The LAB file as LittleCMS shows it in sRGB: 8-bit LAB cannot hold sRGB's primaries
    exactly (blue comes back as 22, 7, 252), so this, not `_colour`, is the right answer."""
    srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
    shown = ImageCms.applyTransform(_lab(), ImageCms.buildTransform(lab, srgb, "LAB", "RGB"))
    assert shown is not None
    return shown


def _bilevel() -> Image.Image:
    return _grey().point(lambda v: 255 if v > 127 else 0).convert("1")


@dataclass(frozen=True)
class Source:
    """A file that Pillow decodes to `mode`, and the picture it shows."""

    name: str
    mode: str
    make: Callable[[], bytes]
    shows: Callable[[], Image.Image] = _colour

    def expected(self) -> list[tuple[int, ...]]:
        """The colours of the four quadrants as a viewer shows them."""
        return quadrant_colours(self.shows())


SOURCES = [
    Source("1-png", "1", lambda: encode(_bilevel(), "PNG"), shows=_bilevel),
    Source("L-png", "L", lambda: encode(_grey(), "PNG"), shows=_grey),
    Source("LA-png", "LA", lambda: encode(_opaque(_grey(), "LA"), "PNG"), shows=_grey),
    Source(
        "La-tiff", "La", lambda: tiff_with_associated_alpha(_opaque(_grey(), "LA")), shows=_grey
    ),
    Source("P-png", "P", lambda: encode(_colour().quantize(4), "PNG")),
    Source("P-gif", "P", lambda: encode(_colour().quantize(4), "GIF")),
    Source("PA-tiff", "PA", lambda: encode(_colour().quantize(4).convert("PA"), "TIFF")),
    Source("RGB-png", "RGB", lambda: encode(_colour(), "PNG")),
    Source("RGBA-png", "RGBA", lambda: encode(_opaque(_colour(), "RGBA"), "PNG")),
    Source(
        "RGBA-tiff-premultiplied",
        "RGBA",
        lambda: tiff_with_associated_alpha(_opaque(_colour(), "RGBA")),
    ),
    Source("CMYK-jpeg", "CMYK", lambda: encode(_colour().convert("CMYK"), "JPEG", quality=95)),
    Source("CMYK-tiff", "CMYK", lambda: encode(_colour().convert("CMYK"), "TIFF")),
    Source("YCbCr-tiff", "YCbCr", lambda: encode(_colour().convert("YCbCr"), "TIFF")),
    Source("LAB-tiff", "LAB", lambda: encode(_lab(), "TIFF"), shows=_lab_shown),
    Source("I;16-png", "I;16", lambda: encode(_wide("I;16"), "PNG"), shows=_grey),
    Source("I;16-tiff-little-endian", "I;16", lambda: encode(_wide("I;16"), "TIFF"), shows=_grey),
    Source("I;16B-tiff-big-endian", "I;16B", lambda: encode(_wide("I;16B"), "TIFF"), shows=_grey),
    Source(
        "I;16-tiff-big-endian-deflate",
        "I;16",
        lambda: encode(_wide("I;16B"), "TIFF", compression="tiff_adobe_deflate"),
        shows=_grey,
    ),
    Source("I-tiff", "I", lambda: encode(_wide("I"), "TIFF"), shows=_grey),
    Source(
        "F-tiff", "F", lambda: encode(_grey().convert("F").point(lambda v: v / 255), "TIFF"), _grey
    ),
]


def test_the_sources_cover_every_mode_pillow_decodes() -> None:
    # The TIFF decoder yields the widest range of modes; the others' are subsets of it
    # (PNG: 1, L, LA, P, RGB, RGBA, I;16; JPEG: L, RGB, CMYK; WebP, AVIF, HEIF: L, RGB(A)).
    decodable = {mode for mode, _ in TiffImagePlugin.OPEN_INFO.values()}
    assert decodable <= {source.mode for source in SOURCES}


def displayed(im: Image.Image) -> Image.Image:
    """An output image as 8-bit RGB, the way a viewer scales deep greyscale."""
    if im.mode in (*SIXTEEN_BIT, "I"):
        im = im.convert("I").point(lambda v: v / 256)
    elif im.mode == "F":
        im = im.point(lambda v: v * 255)
    return im.convert("RGB")


def converted(data: bytes, target: ImageFormat) -> Image.Image:
    result = convert_image(data, ConversionOptions(target=target), LIMITS)
    out = decode(result.data)
    assert out.format == target.value.upper()
    assert out.size == (result.width, result.height) == SIZE
    return out


@pytest.mark.parametrize("target", list(ImageFormat))
@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_every_decodable_mode_converts_to_every_target(source: Source, target: ImageFormat) -> None:
    data = source.make()
    assert decode(data).mode == source.mode  # the file really exercises this mode
    got = quadrant_colours(displayed(converted(data, target)))
    expected = source.expected()
    tolerance = LOSSY_TOLERANCE if PROFILES[target].default_quality else LOSSLESS_TOLERANCE
    assert all(close(g, e, tolerance) for g, e in zip(got, expected, strict=True)), (
        got,
        expected,
    )


@pytest.mark.parametrize("target", [ImageFormat.PNG, ImageFormat.TIFF])
@pytest.mark.parametrize(
    "source", [s for s in SOURCES if s.mode in (*SIXTEEN_BIT, "I")], ids=lambda s: s.name
)
def test_sixteen_bit_targets_keep_every_bit(source: Source, target: ImageFormat) -> None:
    out = converted(source.make(), target)
    assert out.mode in (*SIXTEEN_BIT, "I")
    wide = out.convert("I")
    centres = [(16, 12), (48, 12), (16, 36), (48, 36)]
    assert [wide.getpixel(p) for p in centres] == [_wide("I").getpixel(p) for p in centres]
