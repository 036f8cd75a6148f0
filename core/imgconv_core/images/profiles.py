"""One profile per output format: the modes it writes, alpha, animation, save options, limits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from imgconv_core.images.formats import MIME_TYPES, PILLOW_FORMATS, ImageFormat


class Frames(Enum):
    """What a target does with the extra frames of a source."""

    FIRST_ONLY = "first_only"  # a still format: the first frame
    ANIMATION = "animation"  # timed frames with a loop count (pages of a TIFF excepted)
    PAGES = "pages"  # every frame or page as a page, no timing


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _as_is(ms: int) -> int:
    return ms


def _gif_delay(ms: int) -> int:
    return min(ms, 655_350)  # centiseconds in 16 bits


def _apng_delay(ms: int) -> int:
    # A 16-bit fraction of seconds: exact milliseconds up to 65.535 s, whole seconds beyond.
    return ms if ms <= 65_535 else min(round(ms / 1000), 65_535) * 1000


def _webp_delay(ms: int) -> int:
    return min(ms, 16_777_215)  # 24 bits


def _set_webp_alpha_flag(data: bytes) -> bytes:
    # libwebp's animation encoder crops each frame to the pixels that differ from a
    # transparent canvas; when only the transparent parts get cropped away, it leaves the
    # VP8X alpha flag unset and decoders then paint the uncovered canvas opaque black.
    if len(data) > 20 and data[12:16] == b"VP8X" and not data[20] & 0x10:
        return data[:20] + bytes([data[20] | 0x10]) + data[21:]
    return data


@dataclass(frozen=True)
class FormatProfile:
    """Everything that differs between output formats; the conversion code reads only this."""

    format: ImageFormat
    # Modes written as they are (a mode with a transparent colour key also needs alpha_modes).
    modes: frozenset[str]
    # Modes whose transparency (alpha band or colour key) is kept; empty: flattened on white.
    alpha_modes: frozenset[str]
    # Largest width/height the container (as written by Pillow's encoder) can hold.
    max_side: int
    frames: Frames = Frames.FIRST_ONLY
    # Other modes are converted to RGB unless named here.
    fallback: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    # Lossy formats only; used when the job gives no quality.
    default_quality: int | None = None
    # Save options that are always passed (beyond Pillow's defaults).
    save_options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    # Whether ICC profiles and EXIF are embedded.
    metadata: bool = True
    max_exif_bytes: int | None = None
    # Loop count written for an animation whose source has none (None: the writer's default).
    loop_when_unset: int | None = None
    # Largest loop count the writer takes (None: any); a bigger one is written as this.
    max_loop_count: int | None = None
    # A frame duration in milliseconds as the container can store it (sources differ:
    # WebP allows 4.6 hours per frame, GIF 11 minutes, APNG 18 hours in whole seconds).
    frame_ms: Callable[[int], int] = field(default=_as_is, compare=False)
    # Whether all frames of an animation must share one mode.
    frames_share_mode: bool = True
    # A fix-up of the encoded bytes of an animation with transparency.
    fix_animated_alpha: Callable[[bytes], bytes] | None = field(default=None, compare=False)

    @property
    def pillow_name(self) -> str:
        """Pillow's name of the format's writer."""
        return PILLOW_FORMATS[self.format.value]

    @property
    def mime_type(self) -> str:
        """The MIME type of the output."""
        return MIME_TYPES[self.format.value]

    @property
    def keeps_frames(self) -> bool:
        """Whether more than one frame can be written."""
        return self.frames is not Frames.FIRST_ONLY

    def save_kwargs(self, quality: int | None) -> dict[str, Any]:
        """Pillow save options for this format and the job's quality (ignored if lossless)."""
        kwargs = dict(self.save_options)
        if self.default_quality is not None:
            kwargs["quality"] = quality if quality is not None else self.default_quality
        return kwargs


_SIXTEEN_BIT_WRITTEN = frozenset({"I;16", "I;16B"})
# Colour keys of these modes are written by the PNG and GIF writers (tRNS, transparency index).
_KEYED = frozenset({"1", "L", "P"})
_UNLIMITED = 2**31 - 1

# Pillow's own default qualities are 75 (JPEG, AVIF) and 80 (WebP); 85 for JPEG is the usual
# "visually lossless for photos" point and costs little in size.
PROFILES: Mapping[ImageFormat, FormatProfile] = MappingProxyType(
    {
        profile.format: profile
        for profile in (
            FormatProfile(
                ImageFormat.JPEG,
                modes=frozenset({"L", "RGB", "CMYK"}),
                alpha_modes=frozenset(),
                max_side=65_500,
                fallback=MappingProxyType({"1": "L"}),
                default_quality=85,
                # One APP1 segment; a bigger EXIF block (possible in PNG, TIFF or WebP
                # sources) is dropped rather than failing the conversion.
                max_exif_bytes=65_533,
            ),
            FormatProfile(
                ImageFormat.PNG,
                modes=frozenset({"1", "L", "LA", "P", "RGB", "RGBA", *_SIXTEEN_BIT_WRITTEN}),
                alpha_modes=frozenset({*_KEYED, "LA", "RGB", "RGBA"}),
                max_side=_UNLIMITED,
                frames=Frames.ANIMATION,
                # A source without a loop count plays once; APNG would default to forever.
                loop_when_unset=1,
                max_loop_count=2**32 - 1,
                frame_ms=_apng_delay,
            ),
            FormatProfile(
                ImageFormat.WEBP,
                modes=frozenset({"RGB", "RGBA"}),
                alpha_modes=frozenset({"RGBA"}),
                max_side=16_383,
                frames=Frames.ANIMATION,
                default_quality=80,
                loop_when_unset=1,
                max_loop_count=65_535,
                frame_ms=_webp_delay,
                fix_animated_alpha=_set_webp_alpha_flag,
            ),
            FormatProfile(
                ImageFormat.GIF,
                # Pillow's GIF writer palettises RGB(A) itself, keeping a transparent colour.
                modes=frozenset({"1", "L", "P", "RGB", "RGBA"}),
                alpha_modes=frozenset({*_KEYED, "RGBA"}),
                max_side=65_535,
                frames=Frames.ANIMATION,
                metadata=False,
                max_loop_count=65_535,
                frame_ms=_gif_delay,
                # GIF frames decode as P, then RGB(A); the writer palettises each one.
                frames_share_mode=False,
            ),
            FormatProfile(
                ImageFormat.BMP,
                modes=frozenset({"1", "L", "P", "RGB"}),
                alpha_modes=frozenset(),
                max_side=_UNLIMITED,
                metadata=False,
            ),
            FormatProfile(
                ImageFormat.TIFF,
                modes=frozenset(
                    {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "F", "I;16L"}
                    | _SIXTEEN_BIT_WRITTEN
                ),
                # A TIFF palette cannot carry transparency.
                alpha_modes=frozenset({"LA", "RGBA"}),
                max_side=2**32 - 1,
                frames=Frames.PAGES,
                # Uncompressed TIFF would store 3 bytes per pixel; Deflate is lossless and
                # read by every TIFF reader.
                save_options=MappingProxyType({"compression": "tiff_adobe_deflate"}),
            ),
            FormatProfile(
                ImageFormat.AVIF,
                modes=frozenset({"L", "RGB", "RGBA"}),
                alpha_modes=frozenset({"RGBA"}),
                # AV1 allows 65,536, but libavif's decoders refuse more than 32,768 by
                # default (Pillow's own among them): a wider file would be unreadable.
                max_side=32_768,
                frames=Frames.ANIMATION,
                default_quality=75,
            ),
        )
    }
)
