"""Image formats we read and write, their MIME types and file extensions."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from imgconv_core.errors import UnsupportedFormat


class ImageFormat(StrEnum):
    """Output formats (the `format` field of a job)."""

    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    GIF = "gif"
    BMP = "bmp"
    TIFF = "tiff"
    AVIF = "avif"


# Source formats are the output formats plus HEIC (read-only, through pillow-heif).
SOURCE_FORMATS: frozenset[str] = frozenset([*(f.value for f in ImageFormat), "heic"])

_ALIASES: Mapping[str, ImageFormat] = MappingProxyType(
    {"jpg": ImageFormat.JPEG, "jpe": ImageFormat.JPEG, "tif": ImageFormat.TIFF}
)

MIME_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "jpeg": "image/jpeg",
        "png": "image/png",
        "webp": "image/webp",
        "gif": "image/gif",
        "bmp": "image/bmp",
        "tiff": "image/tiff",
        "avif": "image/avif",
        "heic": "image/heic",
    }
)

EXTENSIONS: Mapping[str, str] = MappingProxyType(
    {
        "jpeg": "jpg",
        "png": "png",
        "webp": "webp",
        "gif": "gif",
        "bmp": "bmp",
        "tiff": "tiff",
        "avif": "avif",
        "heic": "heic",
    }
)

# Pillow's format identifiers, used to restrict Image.open to the sniffed format.
PILLOW_FORMATS: Mapping[str, str] = MappingProxyType(
    {
        "jpeg": "JPEG",
        "png": "PNG",
        "webp": "WEBP",
        "gif": "GIF",
        "bmp": "BMP",
        "tiff": "TIFF",
        "avif": "AVIF",
        "heic": "HEIF",
    }
)

ACCEPTED_TARGETS: tuple[str, ...] = (*(f.value for f in ImageFormat), *_ALIASES)


def parse_target_format(value: str) -> ImageFormat:
    """Parse a user-supplied output format name (case-insensitive, `jpg`/`tif` aliases)."""
    key = value.strip().lower()
    alias = _ALIASES.get(key)
    if alias is not None:
        return alias
    try:
        return ImageFormat(key)
    except ValueError:
        accepted = ", ".join(ACCEPTED_TARGETS)
        raise UnsupportedFormat(
            f"Unsupported output format {value[:40]!r}; accepted: {accepted}.",
            details={"accepted": list(ACCEPTED_TARGETS)},
        ) from None
