"""Metadata: the EXIF we carry over when asked to, and the rest that must not leak through."""

from __future__ import annotations

from typing import Any

from PIL import ExifTags, Image

from imgconv_core.images.decoding import DECODE_ERRORS
from imgconv_core.images.profiles import FormatProfile

# TIFF tags that describe pixel layout or carry metadata we handle separately (ICC, XMP,
# IPTC, Photoshop); everything else in IFD0 (make, model, dates, GPS/EXIF pointers...) is kept.
# fmt: off
_STRUCTURAL_TAGS = frozenset({
    *range(254, 260), 262, 263, 264, 265, 266, 273, 274, 277, 278, 279, 280, 281, 284,
    290, 291, 292, 293, *range(317, 326), 330, 332, *range(338, 342), 347,
    *range(512, 522), *range(529, 533), 700, 33723, 34377, 34675, 37724,
})
# fmt: on


def _normalised_exif(im: Image.Image) -> Image.Exif | None:
    try:
        exif = im.getexif()
        # Load the sub-IFDs now: once tags are removed their file offsets mean nothing.
        exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
        exif.get_ifd(ExifTags.IFD.GPSInfo)
    except DECODE_ERRORS:
        return None  # damaged EXIF: the pixels are still worth converting
    # A TIFF's "EXIF" is its whole IFD0, including the tags that lay out its pixel data;
    # copied into another file they would describe strips and sample formats that are not
    # there (corrupt TIFF output). Orientation goes because the pixels are upright now.
    for tag in [t for t in exif if t in _STRUCTURAL_TAGS]:
        del exif[tag]
    exif.bigtiff = False  # EXIF blocks in JPEG/PNG/WebP/AVIF are classic TIFF
    # Pixel dimensions recorded in EXIF would be stale after a resize.
    exif_ifd.pop(ExifTags.Base.ExifImageWidth, None)
    exif_ifd.pop(ExifTags.Base.ExifImageHeight, None)
    return exif if len(exif) else None


def exif_to_keep(im: Image.Image, profile: FormatProfile) -> Image.Exif | None:
    """The source's EXIF as the target may carry it, or None (none, damaged, or too big)."""
    if not profile.metadata:
        return None
    exif = _normalised_exif(im)
    if exif is None:
        return None
    try:
        # Tags read from a damaged file may not serialise (the writer would raise while
        # saving): drop them like damaged EXIF instead of failing the conversion.
        size = len(exif.tobytes())
    except DECODE_ERRORS:
        return None
    if profile.max_exif_bytes is not None and size > profile.max_exif_bytes:
        return None
    return exif


def strip_info(im: Image.Image) -> None:
    """Drop what Pillow's writers would copy from `info` (comments, ICC, XMP, loop...)."""
    # Everything we want written is passed explicitly; keep only what describes the pixels.
    kept: dict[str | tuple[int, int], Any] = {
        k: im.info[k] for k in ("transparency",) if k in im.info
    }
    im.info = kept


def detached(im: Image.Image) -> Image.Image:
    """A copy free of the source file's tags, where the writer would otherwise copy them."""
    # The TIFF writer copies XMP/IPTC/Photoshop tags from an opened TIFF (`tag_v2`);
    # a plain in-memory copy carries none of them.
    return im.copy() if hasattr(im, "tag_v2") else im
