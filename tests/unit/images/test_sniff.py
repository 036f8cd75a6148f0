from __future__ import annotations

import pytest

from imgconv_core.images.sniff import sniff_format, sniff_unsupported


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body + b"\x00" * 16


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (ftyp(b"avif", b"mif1", b"miaf"), "avif"),
        (ftyp(b"mif1", b"miaf", b"avif"), "avif"),
        (ftyp(b"heic", b"mif1", b"heic"), "heic"),
        (ftyp(b"mif1", b"heic"), "heic"),
        (ftyp(b"heix"), "heic"),
        (ftyp(b"isom", b"mp41"), None),  # an MP4 video
        (b"BM" + b"\x00" * 12 + (40).to_bytes(4, "little") + b"\x00" * 20, "bmp"),
        (b"BMW is a car, not a bitmap", None),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "tiff"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xef\xbb\xbf  <svg viewBox='0 0 1 1'/>", "SVG"),
        (b"<!-- made by hand -->\n<svg>", "SVG"),
        (b"<!DOCTYPE html><html><body><svg></svg></body></html>", None),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
        (ftyp(b"jxl "), "ISO-BMFF image"),
        (b"%PDF-1.4", None),
        (b"", None),
    ],
)
def test_sniff_unsupported(head: bytes, expected: str | None) -> None:
    assert sniff_unsupported(head) == expected
