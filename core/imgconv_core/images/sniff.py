"""Identify an image's format from its first bytes (never from a file name)."""

from __future__ import annotations

import re

# ISO-BMFF brands (the `ftyp` box) that identify the two HEIF-family formats we read.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)

# Recognisable formats we do not read; sniffing them lets us answer "unsupported source
# format" (an image we cannot read) rather than "not an image".
_UNSUPPORTED_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"icns", "ICNS"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"#?RGBE", "Radiance HDR"),
    (b"v/1\x01", "OpenEXR"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"FLIF", "FLIF"),
)
_DIB_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_NETPBM = re.compile(rb"P[1-7][ \t\r\n#]")
_SVG = re.compile(rb"<svg[\s>]", re.IGNORECASE)


def _ftyp_brands(head: bytes) -> list[bytes]:
    if len(head) < 16 or head[4:8] != b"ftyp":
        return []
    box_size = int.from_bytes(head[0:4], "big")
    end = min(box_size if box_size >= 16 else 16, len(head))
    brands = [head[8:12]]
    brands.extend(head[i : i + 4] for i in range(16, end - 3, 4))
    return brands


def sniff_format(head: bytes) -> str | None:
    """Return the lowercase source format name of a format we read, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    # "BM" alone is too common in text; also require a known DIB header size.
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _DIB_HEADER_SIZES:
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    brands = _ftyp_brands(head)
    if brands:
        # The major brand decides first; a file can list both families as compatible.
        if brands[0] in _AVIF_BRANDS:
            return "avif"
        if brands[0] in _HEIC_BRANDS - {b"mif1", b"msf1"}:
            return "heic"
        if any(b in _AVIF_BRANDS for b in brands):
            return "avif"
        if any(b in _HEIC_BRANDS for b in brands):
            return "heic"
    return None


def sniff_unsupported(head: bytes) -> str | None:
    """Return a display name if the bytes look like an image format we do not read."""
    for prefix, name in _UNSUPPORTED_PREFIXES:
        if head.startswith(prefix):
            return name
    if _NETPBM.match(head):
        return "Netpbm"
    if head[:4] == b"RIFF" and head[8:12] == b"ACON":
        return "animated cursor"
    brands = _ftyp_brands(head)
    if any(b in (b"jxl ", b"crx ", b"jp2 ") for b in brands):
        return "ISO-BMFF image"
    text = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith((b"<?xml", b"<svg", b"<!DOCTYPE svg", b"<!--")) and _SVG.search(head):
        return "SVG"
    return None
