"""Format profiles: what each container can hold, checked against Pillow's own writers."""

from __future__ import annotations

import pytest
from PIL import Image, ImageSequence

from imgconv_core.errors import UnsupportedFormat
from imgconv_core.images.convert import ConversionOptions, convert_image
from imgconv_core.images.formats import ImageFormat
from imgconv_core.images.profiles import PROFILES, Frames
from tests.support.images import LIMITS, animation, decode, encode, encode_animation

BOUNDED = [f for f, p in PROFILES.items() if p.max_side < 2**31 - 1]
ANIMATED = [f for f, p in PROFILES.items() if p.frames is Frames.ANIMATION]


def test_every_output_format_has_a_profile() -> None:
    assert set(PROFILES) == set(ImageFormat)
    assert all(PROFILES[f].format is f for f in ImageFormat)


@pytest.mark.parametrize("target", BOUNDED)
def test_the_widest_image_a_profile_allows_is_readable_back(target: ImageFormat) -> None:
    side = PROFILES[target].max_side
    data = encode(Image.new("L", (side + 1, 1), 128), "PNG")
    with pytest.raises(UnsupportedFormat) as exc:
        convert_image(data, ConversionOptions(target=target), LIMITS)
    assert str(side) in exc.value.message
    result = convert_image(data, ConversionOptions(target=target, max_width=side), LIMITS)
    assert decode(result.data).size == (side, 1)  # written and read back by Pillow


def durations_of(data: bytes) -> list[int]:
    out = decode(data)
    found = []
    for frame in ImageSequence.Iterator(out):
        frame.load()
        found.append(int(frame.info["duration"]))
    return found


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (ImageFormat.GIF, [655_350, 100]),  # centiseconds in 16 bits: the longest it holds
        (ImageFormat.PNG, [1_507_000, 100]),  # whole seconds beyond 65.535 s
        (ImageFormat.WEBP, [1_507_428, 100]),
    ],
)
def test_long_frames_are_written_as_long_as_the_target_allows(
    target: ImageFormat, expected: list[int]
) -> None:
    # WebP stores frame durations in 24 bits of milliseconds (4.6 hours); this one is 25 min.
    data = encode_animation(animation(2), "WEBP", [1_507_428, 100], lossless=True)
    result = convert_image(data, ConversionOptions(target=target), LIMITS)
    assert durations_of(result.data) == expected


@pytest.mark.parametrize(
    ("target", "expected"), [(ImageFormat.GIF, 65_535), (ImageFormat.WEBP, 65_535)]
)
def test_a_loop_count_too_big_for_the_target_is_capped(target: ImageFormat, expected: int) -> None:
    data = encode_animation(animation(2), "PNG", [100, 100], loop=100_000)  # APNG: 32 bits
    result = convert_image(data, ConversionOptions(target=target), LIMITS)
    assert decode(result.data).info["loop"] == expected
    as_png = convert_image(data, ConversionOptions(target=ImageFormat.PNG), LIMITS)
    assert decode(as_png.data).info["loop"] == 100_000


@pytest.mark.parametrize("target", ANIMATED)
def test_every_animated_target_keeps_frames(target: ImageFormat) -> None:
    data = encode_animation(animation(3), "GIF", [100] * 3)
    result = convert_image(data, ConversionOptions(target=target), LIMITS)
    assert getattr(decode(result.data), "n_frames", 1) == 3
