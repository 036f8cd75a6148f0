"""Convert image bytes to a target format: orientation, resize, mode and metadata handling."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from types import MappingProxyType
from typing import Any

from PIL import ExifTags, Image, ImageCms, ImageSequence

from imgconv_core.errors import (
    ConversionFailed,
    ImageDecodeError,
    ImageTooLarge,
    InvalidRequest,
    UnsupportedFormat,
)
from imgconv_core.images.formats import MIME_TYPES, PILLOW_FORMATS, ImageFormat
from imgconv_core.images.inspect import (
    PILLOW_ERRORS,
    ImageInfo,
    ImageLimits,
    exif_orientation,
    open_image,
)

# Pillow's own defaults are 75 (JPEG, AVIF) and 80 (WebP); 85 for JPEG is the usual
# "visually lossless for photos" point and costs little in size.
DEFAULT_QUALITY: Mapping[ImageFormat, int] = MappingProxyType(
    {ImageFormat.JPEG: 85, ImageFormat.WEBP: 80, ImageFormat.AVIF: 75}
)
LOSSY_TARGETS = frozenset(DEFAULT_QUALITY)
ANIMATED_TARGETS = frozenset({ImageFormat.GIF, ImageFormat.WEBP, ImageFormat.PNG, ImageFormat.AVIF})
ICC_TARGETS = frozenset(
    {ImageFormat.JPEG, ImageFormat.PNG, ImageFormat.WEBP, ImageFormat.TIFF, ImageFormat.AVIF}
)
EXIF_TARGETS = ICC_TARGETS

# Largest width/height each container (as written by Pillow's encoders) can hold.
MAX_SIDE: Mapping[ImageFormat, int] = MappingProxyType(
    {
        ImageFormat.JPEG: 65_500,
        ImageFormat.WEBP: 16_383,
        ImageFormat.GIF: 65_535,
        ImageFormat.AVIF: 65_536,
        ImageFormat.PNG: 2**31 - 1,
        ImageFormat.BMP: 2**31 - 1,
        ImageFormat.TIFF: 2**32 - 1,
    }
)

# Compression is the one place we deviate from Pillow's defaults: uncompressed TIFF would
# store 3 bytes per pixel; Deflate is lossless and read by every TIFF reader.
_TIFF_COMPRESSION = "tiff_adobe_deflate"

_JPEG_MAX_SEGMENT = 65_533
_DRAFT_MARGIN = 1.25
_WHITE = 255
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
_SWAPS_AXES = frozenset({5, 6, 7, 8})
# TIFF tags that describe pixel layout or carry metadata we handle separately (ICC, XMP,
# IPTC, Photoshop); everything else in IFD0 (make, model, dates, GPS/EXIF pointers...) is kept.
# fmt: off
_STRUCTURAL_TAGS = frozenset({
    *range(254, 260), 262, 263, 264, 265, 266, 273, 274, 277, 278, 279, 280, 281, 284,
    290, 291, 292, 293, *range(317, 326), 330, 332, *range(338, 342), 347,
    *range(512, 522), *range(529, 533), 700, 33723, 34377, 34675, 37724,
})
# fmt: on
_CMS_ERRORS: tuple[type[Exception], ...] = (ImageCms.PyCMSError, *PILLOW_ERRORS)
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ICC_SPACE_OF_MODE: Mapping[str, bytes] = MappingProxyType(
    {
        "1": b"GRAY",
        "L": b"GRAY",
        "LA": b"GRAY",
        "I": b"GRAY",
        "F": b"GRAY",
        **dict.fromkeys(_SIXTEEN_BIT, b"GRAY"),
        "P": b"RGB ",
        "RGB": b"RGB ",
        "RGBA": b"RGB ",
        "CMYK": b"CMYK",
    }
)


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


def _check_options(options: ConversionOptions) -> None:
    if options.quality is not None and not 1 <= options.quality <= 100:
        raise InvalidRequest("quality must be between 1 and 100.")
    for name in ("max_width", "max_height"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise InvalidRequest(f"{name} must be at least 1.")


@lru_cache(maxsize=1)
def _srgb_profile() -> tuple[ImageCms.ImageCmsProfile, bytes]:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return profile, profile.tobytes()


def _icc_space(icc: bytes) -> bytes:
    return icc[16:20] if len(icc) >= 128 else b""


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode in ("P", "L", "RGB", "1") and im.has_transparency_data
    )


def _flatten_on_white(im: Image.Image) -> Image.Image:
    """Composite an image with transparency onto white; returns L or RGB."""
    if im.mode in ("LA", "La") or (im.mode in ("L", "1") and im.has_transparency_data):
        im = im.convert("LA")
        base = Image.new("L", im.size, _WHITE)
        base.paste(im.getchannel("L"), mask=im.getchannel("A"))
        return base
    im = im.convert("RGBA") if im.mode != "RGBA" else im
    base = Image.new("RGB", im.size, (_WHITE, _WHITE, _WHITE))
    base.paste(im, mask=im.getchannel("A"))
    return base


def _deep_to_l(im: Image.Image) -> Image.Image:
    """Scale a 16/32-bit or float greyscale image to 8 bits (Pillow's convert would clip)."""
    if im.mode in _SIXTEEN_BIT:
        return im.point(lambda v: v / 256).convert("L")
    lo, hi = im.getextrema()
    assert isinstance(lo, (int, float))
    assert isinstance(hi, (int, float))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        # NaN or infinity (scientific float TIFFs) defeat range scaling; assume 0..1.
        scale, offset = 255.0, 0.0
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        scale, offset = 255.0, 0.0
    elif lo >= 0 and hi <= 255:
        scale, offset = 1.0, 0.0
    elif lo >= 0 and hi <= 65_535:
        scale, offset = 1 / 256, 0.0
    else:
        scale = 255 / (hi - lo) if hi > lo else 1.0
        offset = -lo * scale
    return im.point(lambda v: v * scale + offset).convert("L")


def _prepare_for_resize(im: Image.Image) -> Image.Image:
    """Move modes that Pillow resizes badly (palette, bilevel, premultiplied) to plain ones."""
    if im.mode in ("P", "PA"):
        return im.convert("RGBA" if _has_alpha(im) else "RGB")
    if im.mode == "1":
        return im.convert("LA" if im.has_transparency_data else "L")
    if im.mode in ("L", "RGB") and im.has_transparency_data:
        return im.convert("LA" if im.mode == "L" else "RGBA")
    if im.mode in ("RGBa", "La"):
        return im.convert(im.mode.upper())
    return im


def _to_target_mode(
    im: Image.Image, target: ImageFormat, icc: bytes | None
) -> tuple[Image.Image, bytes | None]:
    """Convert to a mode the target writes faithfully; returns the image and the ICC to embed."""
    mode = im.mode
    if mode in ("RGBa", "La"):
        im, mode = im.convert(mode.upper()), mode.upper()
    if mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("YCbCr", "LAB", "HSV", "RGBX"):
        im, mode = im.convert("RGB"), "RGB"

    if mode == "CMYK" and target not in (ImageFormat.JPEG, ImageFormat.TIFF):
        if icc and _icc_space(icc) == b"CMYK":
            try:
                srgb, srgb_bytes = _srgb_profile()
                source = ImageCms.ImageCmsProfile(BytesIO(icc))
                converted = ImageCms.profileToProfile(
                    im, source, srgb, outputMode="RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
                )
                assert converted is not None
                return _to_target_mode(converted, target, srgb_bytes)
            except _CMS_ERRORS:
                pass  # a broken profile: fall back to Pillow's naive conversion
        im, mode, icc = im.convert("RGB"), "RGB", None

    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        if target is ImageFormat.TIFF:
            pass
        elif target is ImageFormat.PNG and mode in _SIXTEEN_BIT:
            if mode not in ("I;16", "I;16B"):
                im = im.convert("I;16")
            mode = im.mode
        elif target is ImageFormat.PNG and mode == "I":
            lo, hi = im.getextrema()
            assert isinstance(lo, int)
            assert isinstance(hi, int)
            im = im.convert("I;16") if lo >= 0 and hi <= 65_535 else _deep_to_l(im)
            mode = im.mode
        else:
            im, mode = _deep_to_l(im), "L"

    alpha = _has_alpha(im)
    if target in (ImageFormat.JPEG, ImageFormat.BMP):
        if alpha:
            im = _flatten_on_white(im)
        elif mode == "P" and target is ImageFormat.JPEG:
            im = im.convert("RGB")
        elif mode == "1" and target is ImageFormat.JPEG:
            im = im.convert("L")
        elif mode not in ("1", "L", "P", "RGB", "CMYK"):
            im = im.convert("RGB")
        if target is ImageFormat.BMP and im.mode == "CMYK":
            im = im.convert("RGB")
    elif target in (ImageFormat.WEBP, ImageFormat.AVIF):
        keep = ("RGB", "RGBA", "L") if target is ImageFormat.AVIF else ("RGB", "RGBA")
        if alpha and im.mode != "RGBA":
            im = im.convert("RGBA")
        elif im.mode not in keep:
            im = im.convert("RGB")
    elif target is ImageFormat.PNG:
        if im.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"):
            im = im.convert("RGBA" if alpha else "RGB")
    elif target is ImageFormat.GIF:
        # Pillow's GIF writer palettises RGB(A) itself, keeping a transparent colour.
        if im.mode in ("LA",) or (im.mode in ("RGB",) and alpha):
            im = im.convert("RGBA")
        elif im.mode not in ("1", "L", "P", "RGB", "RGBA"):
            im = im.convert("RGB")
    elif target is ImageFormat.TIFF:
        # A TIFF palette cannot carry transparency.
        if im.mode == "P" and alpha:
            im = im.convert("RGBA")
        elif im.mode in ("L", "RGB") and alpha:
            im = im.convert("LA" if im.mode == "L" else "RGBA")

    if icc and _icc_space(icc) != _ICC_SPACE_OF_MODE.get(im.mode, b"?"):
        icc = None  # a profile for another colour space would mis-colour the output
    return im, icc


def _clean_metadata(im: Image.Image) -> None:
    # Pillow's writers copy comments, ICC, XMP, loop and more from `info`; everything we
    # want written is passed explicitly, so keep only what describes the pixels.
    kept: dict[str | tuple[int, int], Any] = {
        k: im.info[k] for k in ("transparency",) if k in im.info
    }
    im.info = kept


def _detach(im: Image.Image) -> Image.Image:
    # The TIFF writer copies XMP/IPTC/Photoshop tags from an opened TIFF (`tag_v2`);
    # a plain in-memory copy carries none of them.
    return im.copy() if hasattr(im, "tag_v2") else im


def _normalised_exif(im: Image.Image) -> Image.Exif | None:
    try:
        exif = im.getexif()
        # Load the sub-IFDs now: once tags are removed their file offsets mean nothing.
        exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
        exif.get_ifd(ExifTags.IFD.GPSInfo)
    except PILLOW_ERRORS:
        return None
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


def _decode_error(fmt: str, exc: BaseException) -> ImageDecodeError:
    reason = str(exc).split("\n", 1)[0][:200]
    suffix = f" ({reason})" if reason and "/" not in reason and "\\" not in reason else ""
    return ImageDecodeError(
        f"The {fmt.upper()} image is truncated or corrupt and cannot be decoded{suffix}."
    )


def _stored_target(
    stored: tuple[int, int], orientation: int, options: ConversionOptions
) -> tuple[int, int]:
    """Output size in stored orientation: resizing happens before transposing (fewer pixels)."""
    swaps = orientation in _SWAPS_AXES
    width, height = (stored[1], stored[0]) if swaps else stored
    out_w, out_h = fit_within(width, height, options.max_width, options.max_height)
    return (out_h, out_w) if swaps else (out_w, out_h)


def _pad(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Place a frame at the top left of a transparent canvas of the given size."""
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    canvas.paste(im.convert("RGBA"), (0, 0))
    return canvas


def _frame_pixels(
    source: Image.Image,
    info: ImageInfo,
    options: ConversionOptions,
    limits: ImageLimits,
    *,
    all_frames: bool,
) -> tuple[list[Image.Image], list[int], Image.Exif | None, bytes | None]:
    """Decode, orient, resize and convert the kept frames; also returns durations, EXIF, ICC."""
    orientation = exif_orientation(source)
    # The canvas in stored orientation (inspection reported it as displayed).
    swapped = orientation in _SWAPS_AXES
    canvas = (info.height, info.width) if swapped else (info.width, info.height)
    box: tuple[float, float, float, float] | None = None
    if info.format == "jpeg":
        wanted = _stored_target(canvas, orientation, options)
        if wanted != source.size:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, then finish with Lanczos; the
            # margin keeps Lanczos doing part of the reduction (a draft landing exactly on
            # the target would leave all of it to libjpeg's coarser DCT scaling). `box`
            # maps the draft onto the full image.
            margin = (round(wanted[0] * _DRAFT_MARGIN), round(wanted[1] * _DRAFT_MARGIN))
            drafted = source.draft(None, margin)
            if drafted is not None:
                box = drafted[1]
    icc = source.info.get("icc_profile") or None

    frames: list[Image.Image] = []
    durations: list[int] = []
    exif: Image.Exif | None = None
    icc_out: bytes | None = None
    budget = limits.max_pixels
    iterator = ImageSequence.Iterator(source) if all_frames else [source]
    for index, frame in enumerate(iterator):
        # Defence in depth: the header check already bounded this, frame by frame.
        budget -= frame.width * frame.height
        if budget < 0:
            raise ImageTooLarge(
                f"The decoded frames exceed the limit of {limits.max_pixels:,} pixels.",
                details={"max_pixels": limits.max_pixels},
            )
        frame.load()
        if index == 0:
            if orientation == 1 and info.format == "png":
                # A PNG eXIf chunk after the pixel data is only read with the pixels.
                orientation = exif_orientation(frame)
            if not options.strip_metadata:
                exif = _normalised_exif(frame)
        durations.append(int(frame.info.get("duration") or 0))
        im: Image.Image = frame
        if info.format == "gif" and im.size != canvas:
            im = _pad(im, canvas)  # a frame that grew the GIF's logical screen
        # Pages of a TIFF may each have their own size; everything else fills the canvas.
        page = canvas if box is not None or info.format != "tiff" else im.size
        wanted = _stored_target(page, orientation, options)
        if wanted != im.size or box is not None:
            im = _prepare_for_resize(im)
            im = im.resize(wanted, Image.Resampling.LANCZOS, box=box)
        if orientation != 1:
            im = im.transpose(_TRANSPOSE[orientation])
        im, frame_icc = _to_target_mode(im, options.target, icc)
        if index == 0:
            icc_out = frame_icc
        if all_frames and im is frame:
            # ImageSequence reuses one object for every frame; keep a snapshot.
            im = frame.copy()
        frames.append(im)
    return frames, durations, exif, icc_out


def _unify_modes(frames: list[Image.Image], target: ImageFormat) -> list[Image.Image]:
    """Animated WebP/AVIF/APNG need one mode for all frames (GIF frames start as P, then RGB)."""
    if target is ImageFormat.GIF or len({f.mode for f in frames}) == 1:
        return frames
    mode = "RGBA" if any(_has_alpha(f) for f in frames) else "RGB"
    return [f if f.mode == mode else f.convert(mode) for f in frames]


def _save_kwargs(
    options: ConversionOptions,
    *,
    icc: bytes | None,
    exif: Image.Exif | None,
    durations: list[int] | None,
    loop: int | None,
) -> dict[str, Any]:
    target = options.target
    kwargs: dict[str, Any] = {}
    if target in LOSSY_TARGETS:
        kwargs["quality"] = (
            options.quality if options.quality is not None else DEFAULT_QUALITY[target]
        )
    if target is ImageFormat.TIFF:
        kwargs["compression"] = _TIFF_COMPRESSION
    if icc and target in ICC_TARGETS:
        kwargs["icc_profile"] = icc
    # A JPEG APP1 segment holds at most 64 KB; a bigger block (possible in PNG, TIFF or
    # WebP sources) is dropped rather than failing the conversion.
    fits = exif is not None and (
        target is not ImageFormat.JPEG or len(exif.tobytes()) <= _JPEG_MAX_SEGMENT
    )
    if fits and target in EXIF_TARGETS:
        kwargs["exif"] = exif
    if durations is not None:
        kwargs["save_all"] = True
        if target is not ImageFormat.TIFF:
            kwargs["duration"] = durations
            # A source without a loop count plays once; WebP and APNG would default to forever.
            if loop is not None:
                kwargs["loop"] = loop
            elif target in (ImageFormat.WEBP, ImageFormat.PNG):
                kwargs["loop"] = 1
    return kwargs


def _set_webp_alpha_flag(data: bytes) -> bytes:
    # libwebp's animation encoder crops each frame to the pixels that differ from a
    # transparent canvas; when only the transparent parts get cropped away, it leaves the
    # VP8X alpha flag unset and decoders then paint the uncovered canvas opaque black.
    if len(data) > 20 and data[12:16] == b"VP8X" and not data[20] & 0x10:
        return data[:20] + bytes([data[20] | 0x10]) + data[21:]
    return data


def convert_image(data: bytes, options: ConversionOptions, limits: ImageLimits) -> ConvertedImage:
    """Convert image bytes as the options say; raises a domain error on bad input."""
    _check_options(options)
    target = options.target
    source, info = open_image(data, limits)
    with source:
        out_w, out_h = fit_within(info.width, info.height, options.max_width, options.max_height)
        limit = MAX_SIDE[target]
        if out_w > limit or out_h > limit:
            raise UnsupportedFormat(
                f"{target.value.upper()} cannot hold an image of {out_w} x {out_h} pixels "
                f"(at most {limit} per side); set max_width or max_height, "
                "or choose another format.",
                details={"max_side": limit},
            )
        keep_frames = info.frames > 1 and (
            target in ANIMATED_TARGETS
            # Pages of a multi-page TIFF are kept in TIFF; other sources' frames too.
            or target is ImageFormat.TIFF
        )
        if info.frames > 1 and info.format == "tiff" and target is not ImageFormat.TIFF:
            keep_frames = False  # TIFF pages are documents, not animation frames
        loop = source.info.get("loop")  # read before seeking: later frames may not carry it
        try:
            frames, durations, exif, icc = _frame_pixels(
                source, info, options, limits, all_frames=keep_frames
            )
        except Image.DecompressionBombError as exc:  # only if Pillow's guard was re-enabled
            raise ImageTooLarge(f"The image is too large: {exc}") from None
        except PILLOW_ERRORS as exc:
            raise _decode_error(info.format, exc) from None

        if keep_frames:
            frames = _unify_modes(frames, target)
        first = _detach(frames[0])
        for frame in (first, *frames[1:]):
            _clean_metadata(frame)
        kwargs = _save_kwargs(
            options,
            icc=icc,
            exif=exif,
            durations=durations if keep_frames else None,
            loop=loop if isinstance(loop, int) else None,
        )
        if keep_frames:
            kwargs["append_images"] = frames[1:]
        out = BytesIO()
        try:
            first.save(out, format=PILLOW_FORMATS[target.value], **kwargs)
        except PILLOW_ERRORS as exc:
            raise ConversionFailed(
                f"Encoding to {target.value.upper()} failed: {str(exc)[:200]}"
            ) from None
        encoded = out.getvalue()
        if target is ImageFormat.WEBP and keep_frames and any(_has_alpha(f) for f in frames):
            encoded = _set_webp_alpha_flag(encoded)
    return ConvertedImage(
        data=encoded,
        format=target,
        width=first.width,
        height=first.height,
        mime_type=MIME_TYPES[target.value],
    )
