from __future__ import annotations

import pytest

from imgconv_core.errors import UnsupportedFormat
from imgconv_core.images.formats import (
    EXTENSIONS,
    MIME_TYPES,
    SOURCE_FORMATS,
    ImageFormat,
    parse_target_format,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jpeg", ImageFormat.JPEG),
        ("JPG", ImageFormat.JPEG),
        ("jpg", ImageFormat.JPEG),
        (" Png ", ImageFormat.PNG),
        ("tif", ImageFormat.TIFF),
        ("TIFF", ImageFormat.TIFF),
        ("webp", ImageFormat.WEBP),
        ("avif", ImageFormat.AVIF),
        ("gif", ImageFormat.GIF),
        ("bmp", ImageFormat.BMP),
    ],
)
def test_parse_target_format_accepts_names_and_aliases(value: str, expected: ImageFormat) -> None:
    assert parse_target_format(value) is expected


@pytest.mark.parametrize("value", ["heic", "svg", "", "jpegx", "pdf"])
def test_parse_target_format_rejects_others_listing_accepted(value: str) -> None:
    with pytest.raises(UnsupportedFormat) as exc:
        parse_target_format(value)
    assert exc.value.code == "unsupported_format"
    for name in ("jpeg", "jpg", "png", "webp", "gif", "bmp", "tiff", "tif", "avif"):
        assert name in exc.value.message


def test_every_source_format_has_mime_type_and_extension() -> None:
    assert set(MIME_TYPES) == SOURCE_FORMATS == set(EXTENSIONS)
    assert MIME_TYPES["heic"] == "image/heic"
    assert MIME_TYPES["jpeg"] == "image/jpeg"
    assert EXTENSIONS["jpeg"] == "jpg"
    assert all(MIME_TYPES[f].startswith("image/") for f in SOURCE_FORMATS)
