"""Colour: pixel modes a target writes faithfully, alpha, bit depth, CMYK and ICC profiles."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from io import BytesIO
from types import MappingProxyType

from PIL import Image, ImageCms

from imgconv_core.images.profiles import FormatProfile

SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
DEEP = SIXTEEN_BIT | {"I", "F"}
_GREY = frozenset({"1", "L", "LA", *DEEP})
# Premultiplied alpha, palette + alpha and the colour spaces only TIFF and JPEG decoders
# produce: every target gets them as a plain mode.
_PLAIN: Mapping[str, str] = MappingProxyType(
    {
        "RGBa": "RGBA",
        "La": "LA",
        "PA": "RGBA",
        "YCbCr": "RGB",
        "LAB": "RGB",
        "HSV": "RGB",
        "RGBX": "RGB",
    }
)
# What a broken embedded ICC profile raises (OSError: unreadable; PyCMSError: unusable).
_CMS_ERRORS: tuple[type[Exception], ...] = (ImageCms.PyCMSError, OSError)
_WHITE = 255
_ICC_SPACE_OF_MODE: Mapping[str, bytes] = MappingProxyType(
    {
        **dict.fromkeys(_GREY, b"GRAY"),
        "P": b"RGB ",
        "RGB": b"RGB ",
        "RGBA": b"RGB ",
        "CMYK": b"CMYK",
    }
)


@lru_cache(maxsize=1)
def _srgb_profile() -> tuple[ImageCms.ImageCmsProfile, bytes]:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return profile, profile.tobytes()


def _icc_space(icc: bytes) -> bytes:
    return icc[16:20] if len(icc) >= 128 else b""


def has_alpha(im: Image.Image) -> bool:
    """Whether the image has transparency: an alpha band or a transparent colour key."""
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode in ("P", "L", "RGB", "1") and im.has_transparency_data
    )


def flatten_on_white(im: Image.Image) -> Image.Image:
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


def _wide(im: Image.Image) -> Image.Image:
    # Pillow converts between the 16-bit layouts (and to I;16) through 8 bits, clipping;
    # only the conversion to 32-bit "I" keeps the values. Point and extrema also need it.
    return im.convert("I") if im.mode in SIXTEEN_BIT and im.mode != "I;16" else im


def deep_to_l(im: Image.Image) -> Image.Image:
    """Scale a 16/32-bit or float greyscale image to 8 bits (Pillow's convert would clip)."""
    if im.mode in SIXTEEN_BIT:
        return _wide(im).point(lambda v: v / 256).convert("L")
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


def _reduce_depth(im: Image.Image, profile: FormatProfile) -> Image.Image:
    """A deep greyscale image the target cannot write as it is: 16 bits if it fits, else 8."""
    if "I;16" in profile.modes and im.mode != "F":
        wide = _wide(im)
        lo, hi = wide.getextrema()
        assert isinstance(lo, int)
        assert isinstance(hi, int)
        if lo >= 0 and hi <= 65_535:
            return wide.convert("I;16")
    return deep_to_l(im)


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK to RGB, through the embedded CMYK profile when there is a usable one."""
    if icc and _icc_space(icc) == b"CMYK":
        try:
            srgb, srgb_bytes = _srgb_profile()
            source = ImageCms.ImageCmsProfile(BytesIO(icc))
            converted = ImageCms.profileToProfile(
                im, source, srgb, outputMode="RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
            )
        except _CMS_ERRORS:
            pass  # a broken profile: fall back to Pillow's naive conversion
        else:
            assert converted is not None
            return converted, srgb_bytes
    return im.convert("RGB"), None


def prepare_for_resize(im: Image.Image) -> Image.Image:
    """Move modes that Pillow resizes badly (palette, bilevel, premultiplied) to plain ones."""
    if im.mode in ("P", "PA"):
        return im.convert("RGBA" if has_alpha(im) else "RGB")
    if im.mode == "1":
        return im.convert("LA" if im.has_transparency_data else "L")
    if im.mode in ("L", "RGB") and im.has_transparency_data:
        return im.convert("LA" if im.mode == "L" else "RGBA")
    if im.mode in ("RGBa", "La"):
        return im.convert(im.mode.upper())
    return im


def to_target_mode(
    im: Image.Image, profile: FormatProfile, icc: bytes | None
) -> tuple[Image.Image, bytes | None]:
    """Convert to a mode the target writes faithfully; returns the image and the ICC to embed."""
    plain = _PLAIN.get(im.mode)
    if plain is not None:
        im = im.convert(plain)
    if im.mode == "CMYK" and "CMYK" not in profile.modes:
        im, icc = _cmyk_to_rgb(im, icc)
    if im.mode in DEEP and im.mode not in profile.modes:
        im = _reduce_depth(im, profile)

    if has_alpha(im):
        if not profile.alpha_modes:
            im = flatten_on_white(im)
        elif im.mode not in profile.alpha_modes:
            grey = im.mode in _GREY and "LA" in profile.alpha_modes
            im = im.convert("LA" if grey else "RGBA")
    elif im.mode not in profile.modes:
        im = im.convert(profile.fallback.get(im.mode, "RGB"))

    if icc and _icc_space(icc) != _ICC_SPACE_OF_MODE.get(im.mode, b"?"):
        icc = None  # a profile for another colour space would mis-colour the output
    return im, icc
