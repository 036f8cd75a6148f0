"""Convert image bytes to a target format, as the target's profile says."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Any

from PIL import Image

from imgconv_core.errors import InvalidRequest, UnsupportedFormat
from imgconv_core.images.colour import has_alpha
from imgconv_core.images.formats import ImageFormat
from imgconv_core.images.frames import ConvertedFrames, convert_frames, fit_within
from imgconv_core.images.inspect import ImageLimits, open_image
from imgconv_core.images.metadata import detached, strip_info
from imgconv_core.images.profiles import PROFILES, FormatProfile, Frames

__all__ = ["ConversionOptions", "ConvertedImage", "convert_image", "fit_within"]


@dataclass(frozen=True)
class ConversionOptions:
    """What the user asked for; quality only matters for lossy targets (JPEG, WebP, AVIF)."""

    target: ImageFormat
    quality: int | None = None
    max_width: int | None = None
    max_height: int | None = None
    strip_metadata: bool = True


@dataclass(frozen=True)
class ConvertedImage:
    """The encoded result."""

    data: bytes
    format: ImageFormat
    width: int
    height: int
    mime_type: str


def _check_options(options: ConversionOptions) -> None:
    if options.quality is not None and not 1 <= options.quality <= 100:
        raise InvalidRequest("quality must be between 1 and 100.")
    for name in ("max_width", "max_height"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise InvalidRequest(f"{name} must be at least 1.")


# What a writer raises when it refuses a value we passed on from the source (EXIF tags).
_WRITER_REFUSED = (ValueError, OSError)


def _save_options(
    profile: FormatProfile,
    quality: int | None,
    converted: ConvertedFrames,
    keep_frames: bool,
    loop: object,
) -> dict[str, Any]:
    """The writer's options: the profile's, the job's quality, metadata and animation."""
    kwargs = profile.save_kwargs(quality)
    if converted.icc and profile.metadata:
        kwargs["icc_profile"] = converted.icc
    if converted.exif is not None:
        kwargs["exif"] = converted.exif
    if keep_frames:
        kwargs["save_all"] = True
        kwargs["append_images"] = converted.frames[1:]
        if profile.frames is Frames.ANIMATION:
            kwargs["duration"] = [profile.frame_ms(ms) for ms in converted.durations]
            if isinstance(loop, int):
                cap = profile.max_loop_count
                kwargs["loop"] = loop if cap is None else min(loop, cap)
            elif profile.loop_when_unset is not None:
                kwargs["loop"] = profile.loop_when_unset
    return kwargs


def _encode(im: Image.Image, pillow_name: str, kwargs: dict[str, Any]) -> bytes:
    out = BytesIO()
    im.save(out, format=pillow_name, **kwargs)
    return out.getvalue()


def convert_image(data: bytes, options: ConversionOptions, limits: ImageLimits) -> ConvertedImage:
    """Convert image bytes as the options say; raises a domain error on bad input.

    Only damaged input becomes a domain error; anything else raised here is a bug (ours or
    a library's) and propagates as it is.
    """
    _check_options(options)
    profile = PROFILES[options.target]
    source, info = open_image(data, limits)
    with source:
        out_w, out_h = fit_within(info.width, info.height, options.max_width, options.max_height)
        if out_w > profile.max_side or out_h > profile.max_side:
            raise UnsupportedFormat(
                f"{options.target.value.upper()} cannot hold an image of {out_w} x {out_h} pixels "
                f"(at most {profile.max_side} per side); set max_width or max_height, "
                "or choose another format.",
                details={"max_side": profile.max_side},
            )
        # Pages of a multi-page TIFF are documents, not animation frames: only a TIFF
        # target keeps them. Frames of other sources are kept as animation or as pages.
        keep_frames = info.frames > 1 and (
            profile.frames is Frames.PAGES
            or (profile.frames is Frames.ANIMATION and info.format != "tiff")
        )
        loop = source.info.get("loop")  # read before seeking: later frames may not carry it
        converted = convert_frames(
            source,
            info,
            profile,
            limits,
            bounds=(options.max_width, options.max_height),
            keep_exif=not options.strip_metadata,
            all_frames=keep_frames,
        )
        frames = converted.frames
        first = detached(frames[0])
        for frame in (first, *frames[1:]):
            strip_info(frame)
        kwargs = _save_options(profile, options.quality, converted, keep_frames, loop)
        try:
            encoded = _encode(first, profile.pillow_name, kwargs)
        except _WRITER_REFUSED:
            if "exif" not in kwargs:
                raise
            # EXIF tags of the wrong type, from a damaged or nonconforming file, pass
            # Pillow's serialiser but not libtiff's checks: the pixels matter more.
            del kwargs["exif"]
            encoded = _encode(first, profile.pillow_name, kwargs)
        if keep_frames and profile.fix_animated_alpha and any(has_alpha(f) for f in frames):
            encoded = profile.fix_animated_alpha(encoded)
    return ConvertedImage(
        data=encoded,
        format=options.target,
        width=first.width,
        height=first.height,
        mime_type=profile.mime_type,
    )
