"""Header-only inspection of uploaded bytes: format, size, frame count, limits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING

from PIL import ExifTags, Image

from imgconv_core.errors import (
    EmptyFile,
    ImageDecodeError,
    ImageTooLarge,
    NotAnImage,
    TooManyFrames,
    UnsupportedSourceFormat,
)
from imgconv_core.images.decoding import DECODE_ERRORS
from imgconv_core.images.formats import MIME_TYPES, PILLOW_FORMATS, SOURCE_FORMATS
from imgconv_core.images.gifscan import GifGeometry, scan_gif
from imgconv_core.images.sniff import sniff_format, sniff_unsupported

if TYPE_CHECKING:
    from imgconv_core.settings import Settings

_SUPPORTED_LIST = "JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF or HEIC"
_SNIFF_BYTES = 1024

# Orientations 5-8 rotate by 90 degrees, so the displayed width and height swap.
SWAPS_AXES = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class ImageLimits:
    """Per-image limits; pixels count every frame (frames x width x height)."""

    max_pixels: int
    max_frames: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """Build the limits from the service settings."""
        return cls(max_pixels=settings.max_pixels, max_frames=settings.max_frames)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says; width and height are as displayed (EXIF orientation applied)."""

    format: str
    width: int
    height: int
    frames: int
    mime_type: str


def _pillow_orients_tiff() -> bool:
    # Recent Pillow applies a TIFF's orientation tag itself (size at open, pixels at load);
    # older versions leave it to the caller. Probe once rather than trust a version number.
    out = BytesIO()
    Image.new("L", (2, 1)).save(out, "TIFF", tiffinfo={ExifTags.Base.Orientation: 6})
    with Image.open(out) as probe:
        return probe.size == (1, 2)


_PILLOW_ORIENTS_TIFF = _pillow_orients_tiff()


def exif_orientation(im: Image.Image) -> int:
    """Return the EXIF orientation (1-8) still to be applied to the decoded pixels, else 1."""
    if im.format == "TIFF" and _PILLOW_ORIENTS_TIFF:
        return 1
    # A PNG eXIf chunk after the image data would force a full decode just to read it.
    if im.format == "PNG" and "exif" not in im.info and "Raw profile type exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


@contextmanager
def _reading_frames(fmt: str) -> Iterator[None]:
    """Scope of a Pillow call that reads frames: its errors are the file's."""
    try:
        yield
    except DECODE_ERRORS:
        raise ImageDecodeError(
            f"The {fmt.upper()} image is truncated or corrupt: its frames cannot be read."
        ) from None


def count_frames(im: Image.Image, fmt: str) -> int:
    """Return the number of frames we would convert."""
    if fmt in ("heic", "jpeg"):
        # Extra HEIF top-level images (bursts, depth maps) and the extra pictures of an
        # MPO JPEG (phones' depth or gain maps, stereo pairs) are not animation frames:
        # we convert the primary image only.
        return 1
    with _reading_frames(fmt):  # Pillow counts by walking the file (GIF, PNG, WebP...)
        n_frames = getattr(im, "n_frames", 1)
    return n_frames if isinstance(n_frames, int) and n_frames > 0 else 1


def open_image(data: bytes, limits: ImageLimits) -> tuple[Image.Image, ImageInfo]:
    """Open the bytes lazily (header only) after sniffing and checking them against limits."""
    if not data:
        raise EmptyFile("The file is empty.")
    head = data[:_SNIFF_BYTES]
    fmt = sniff_format(head)
    if fmt is None:
        other = sniff_unsupported(head)
        if other is not None:
            raise UnsupportedSourceFormat(
                f"{other} files are not supported; send a {_SUPPORTED_LIST} image.",
                details={"detected": other},
            )
        raise NotAnImage(f"The file is not a {_SUPPORTED_LIST} image.")
    assert fmt in SOURCE_FORMATS
    gif = scan_gif(data) if fmt == "gif" else None
    if gif is not None:
        # Before Image.open: opening a GIF already seeks to its first frame, which allocates
        # a buffer of the frame's declared size.
        _check_geometry(gif.width, gif.height, gif.frames, limits)
    try:
        im = Image.open(BytesIO(data), formats=[PILLOW_FORMATS[fmt]])
    except Image.DecompressionBombError as exc:  # only if someone re-enabled Pillow's guard
        raise ImageTooLarge(f"The image is too large: {exc}") from None
    except DECODE_ERRORS:
        raise ImageDecodeError(
            f"The file looks like a {fmt.upper()} image but is truncated or corrupt: "
            "its header cannot be read."
        ) from None
    try:
        info = _check(im, fmt, gif, limits)
    except BaseException:
        im.close()
        raise
    return im, info


def _too_large(pixels: int, what: str, limits: ImageLimits) -> ImageTooLarge:
    return ImageTooLarge(
        f"The image has {pixels:,} pixels ({what}); the limit is {limits.max_pixels:,}.",
        details={"pixels": pixels, "max_pixels": limits.max_pixels},
    )


def _tiff_pixels(im: Image.Image, frames: int, limits: ImageLimits) -> int:
    # TIFF pages each have their own size; seeking reads only the page's directory.
    total = 0
    for page in range(frames):
        with _reading_frames("tiff"):
            im.seek(page)
        total += im.width * im.height
        if total > limits.max_pixels:
            break
    with _reading_frames("tiff"):
        im.seek(0)
    return total


def _check_geometry(width: int, height: int, frames: int, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels:
        raise _too_large(width * height, f"{width} x {height}", limits)
    if frames > limits.max_frames:
        raise TooManyFrames(
            f"The image has {frames} frames; the limit is {limits.max_frames}.",
            details={"frames": frames, "max_frames": limits.max_frames},
        )
    if frames * width * height > limits.max_pixels:
        raise _too_large(frames * width * height, f"{frames} frames", limits)


def _check(im: Image.Image, fmt: str, gif: GifGeometry | None, limits: ImageLimits) -> ImageInfo:
    width, height = im.size
    frames: int | None = None
    if gif is not None:
        width, height = max(width, gif.width), max(height, gif.height)
        frames = gif.frames
    if width <= 0 or height <= 0:
        raise NotAnImage("The image has no pixels (zero width or height).")
    pixels = width * height
    # Checked before counting frames: counting can mean walking the whole file.
    if pixels > limits.max_pixels:
        raise _too_large(pixels, f"{width} x {height}", limits)
    if frames is None:
        frames = count_frames(im, fmt)
    if frames > limits.max_frames:
        raise TooManyFrames(
            f"The image has {frames} frames; the limit is {limits.max_frames}.",
            details={"frames": frames, "max_frames": limits.max_frames},
        )
    total = _tiff_pixels(im, frames, limits) if fmt == "tiff" else frames * pixels
    if total > limits.max_pixels:
        raise _too_large(total, f"{frames} frames", limits)
    if exif_orientation(im) in SWAPS_AXES:
        width, height = height, width
    return ImageInfo(
        format=fmt, width=width, height=height, frames=frames, mime_type=MIME_TYPES[fmt]
    )


def inspect_image(data: bytes, limits: ImageLimits) -> ImageInfo:
    """Sniff and check an upload from its header alone; raises a domain error if unacceptable."""
    im, info = open_image(data, limits)
    im.close()
    return info
