"""Frames: decode each kept frame, orient it upright, resize it and put it in the target's mode."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from PIL import Image, ImageSequence

from imgconv_core.errors import ImageTooLarge
from imgconv_core.images.colour import has_alpha, prepare_for_resize, to_target_mode
from imgconv_core.images.decoding import decode_error, reading
from imgconv_core.images.inspect import SWAPS_AXES, ImageInfo, ImageLimits, exif_orientation
from imgconv_core.images.metadata import exif_to_keep
from imgconv_core.images.profiles import FormatProfile

Bounds = tuple[int | None, int | None]

_DRAFT_MARGIN = 1.25
_TRANSPOSE: Mapping[int, Image.Transpose] = MappingProxyType(
    {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }
)


def fit_within(
    width: int, height: int, max_width: int | None, max_height: int | None
) -> tuple[int, int]:
    """Return the size that fits inside the bounds, keeping aspect ratio and never upscaling."""
    scale = 1.0
    if max_width is not None and width > max_width:
        scale = max_width / width
    if max_height is not None and height > max_height:
        scale = min(scale, max_height / height)
    if scale >= 1.0:
        return width, height
    new_w = max(1, round(width * scale))
    new_h = max(1, round(height * scale))
    # Rounding can overshoot a bound by one pixel on the side that was not limiting.
    if max_width is not None:
        new_w = min(new_w, max_width)
    if max_height is not None:
        new_h = min(new_h, max_height)
    return new_w, new_h


def _stored_target(stored: tuple[int, int], orientation: int, bounds: Bounds) -> tuple[int, int]:
    """Output size in stored orientation: resizing happens before transposing (fewer pixels)."""
    swaps = orientation in SWAPS_AXES
    width, height = (stored[1], stored[0]) if swaps else stored
    out_w, out_h = fit_within(width, height, *bounds)
    return (out_h, out_w) if swaps else (out_w, out_h)


def _pad(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Place a frame at the top left of a transparent canvas of the given size."""
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    canvas.paste(im.convert("RGBA"), (0, 0))
    return canvas


@dataclass(frozen=True)
class ConvertedFrames:
    """The kept frames, ready to encode, and what the writer needs besides the pixels."""

    frames: list[Image.Image]
    durations: list[int]
    exif: Image.Exif | None
    icc: bytes | None


def _draft_box(
    source: Image.Image, info: ImageInfo, wanted: tuple[int, int]
) -> tuple[float, float, float, float] | None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale; returns the box mapping the draft."""
    # The margin keeps Lanczos doing part of the reduction (a draft landing exactly on the
    # target would leave all of it to libjpeg's coarser DCT scaling).
    margin = (round(wanted[0] * _DRAFT_MARGIN), round(wanted[1] * _DRAFT_MARGIN))
    with reading(info.format):
        drafted = source.draft(None, margin)
    return None if drafted is None else drafted[1]


def _decoded(source: Image.Image, info: ImageInfo, all_frames: bool) -> Iterator[Image.Image]:
    """Yield each kept frame with its pixels loaded; damaged data raises ImageDecodeError."""
    frames = ImageSequence.Iterator(source) if all_frames else iter([source])
    while True:
        with reading(info.format):
            frame = next(frames, None)
            if frame is None:
                return
            frame.load()
        if frame.mode in ("P", "PA") and frame.palette is None:
            # What Pillow leaves after some damaged GIF frames; any use of it would fail.
            raise decode_error(info.format, ValueError("a palette frame without a palette"))
        yield frame


def convert_frames(
    source: Image.Image,
    info: ImageInfo,
    profile: FormatProfile,
    limits: ImageLimits,
    *,
    bounds: Bounds,
    keep_exif: bool,
    all_frames: bool,
) -> ConvertedFrames:
    """Decode, orient, resize and convert the kept frames of an opened image."""
    orientation = exif_orientation(source)
    # The canvas in stored orientation (inspection reported it as displayed).
    swapped = orientation in SWAPS_AXES
    canvas = (info.height, info.width) if swapped else (info.width, info.height)
    box: tuple[float, float, float, float] | None = None
    if info.format == "jpeg":
        wanted = _stored_target(canvas, orientation, bounds)
        if wanted != source.size:
            box = _draft_box(source, info, wanted)
    icc = source.info.get("icc_profile") or None

    frames: list[Image.Image] = []
    durations: list[int] = []
    exif: Image.Exif | None = None
    icc_out: bytes | None = None
    budget = limits.max_pixels
    for index, frame in enumerate(_decoded(source, info, all_frames)):
        # Defence in depth: the header check already bounded this, frame by frame.
        budget -= frame.width * frame.height
        if budget < 0:
            raise ImageTooLarge(
                f"The decoded frames exceed the limit of {limits.max_pixels:,} pixels.",
                details={"max_pixels": limits.max_pixels},
            )
        if index == 0:
            if orientation == 1 and info.format == "png":
                # A PNG eXIf chunk after the pixel data is only read with the pixels.
                orientation = exif_orientation(frame)
            if keep_exif:
                exif = exif_to_keep(frame, profile)
        durations.append(max(0, int(frame.info.get("duration") or 0)))
        im: Image.Image = frame
        if info.format == "gif" and im.size != canvas:
            im = _pad(im, canvas)  # a frame that grew the GIF's logical screen
        # Pages of a TIFF may each have their own size; everything else fills the canvas.
        page = canvas if box is not None or info.format != "tiff" else im.size
        wanted = _stored_target(page, orientation, bounds)
        if wanted != im.size or box is not None:
            im = prepare_for_resize(im)
            im = im.resize(wanted, Image.Resampling.LANCZOS, box=box)
        if orientation != 1:
            im = im.transpose(_TRANSPOSE[orientation])
        im, frame_icc = to_target_mode(im, profile, icc)
        if index == 0:
            icc_out = frame_icc
        if all_frames and im is frame:
            # ImageSequence reuses one object for every frame; keep a snapshot.
            im = frame.copy()
        frames.append(im)
    if all_frames and profile.frames_share_mode and len({f.mode for f in frames}) > 1:
        # Animated WebP/AVIF/APNG need one mode for all frames (GIF frames: P, then RGB).
        mode = "RGBA" if any(has_alpha(f) for f in frames) else "RGB"
        frames = [f if f.mode == mode else f.convert(mode) for f in frames]
    return ConvertedFrames(frames, durations, exif, icc_out)
