"""Property tests: any mode x target x bounds gives a decodable image of the right size."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from PIL import Image

from imgconv_api.errors import status_of
from imgconv_core.errors import ImgconvError
from imgconv_core.images.convert import ConversionOptions, convert_image, fit_within
from imgconv_core.images.formats import ImageFormat
from imgconv_core.images.inspect import inspect_image
from tests.support.images import LIMITS, encode, quadrants

# Mode -> containers that store that mode natively.
CONTAINERS: dict[str, list[str]] = {
    "1": ["PNG", "TIFF", "BMP"],
    "L": ["PNG", "TIFF", "JPEG", "GIF", "BMP", "AVIF"],
    "LA": ["PNG", "TIFF"],
    "P": ["PNG", "GIF", "BMP", "TIFF"],
    "RGB": ["PNG", "TIFF", "JPEG", "WEBP", "BMP", "AVIF", "HEIF"],
    "RGBA": ["PNG", "TIFF", "WEBP", "AVIF"],
    "CMYK": ["JPEG", "TIFF"],
    "I;16": ["PNG", "TIFF"],
    "I;16B": ["TIFF"],
    "PA": ["TIFF"],
    "YCbCr": ["TIFF"],
    "LAB": ["TIFF"],
    "I": ["TIFF"],
    "F": ["TIFF"],
}
PILLOW_NAME = {f: f.value.upper() for f in ImageFormat}

bounds = st.one_of(st.none(), st.integers(min_value=1, max_value=80))


@st.composite
def source_images(draw: st.DrawFn) -> tuple[bytes, tuple[int, int], str, str]:
    mode = draw(st.sampled_from(sorted(CONTAINERS)))
    container = draw(st.sampled_from(CONTAINERS[mode]))
    size = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    seed = draw(st.integers(0, 2**16))
    noise = Image.effect_noise(size, 64).point(lambda v: (v + seed) % 256)
    if mode == "1":
        im = noise.convert("1")
    elif mode in ("I", "F"):
        im = noise.convert(mode).point(lambda v: v * 97)
    elif mode in ("I;16", "I;16B"):
        im = noise.convert("I").point(lambda v: v * 257).convert(mode)
    elif mode == "P":
        im = quadrants(*size).convert("P", palette=Image.Palette.ADAPTIVE)
        if draw(st.booleans()):
            im.info["transparency"] = 0
    else:
        bands = Image.new(mode, (1, 1)).getbands()
        im = Image.merge(
            mode, [noise.rotate(90 * i) if size[0] == size[1] else noise for i in range(len(bands))]
        )
    kwargs = {"lossless": True} if container == "WEBP" else {}
    return encode(im, container, **kwargs), size, mode, container


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=source_images(),
    target=st.sampled_from(list(ImageFormat)),
    max_width=bounds,
    max_height=bounds,
    strip=st.booleans(),
)
def test_any_mode_to_any_target_decodes_at_the_fitted_size(
    source: tuple[bytes, tuple[int, int], str, str],
    target: ImageFormat,
    max_width: int | None,
    max_height: int | None,
    strip: bool,
) -> None:
    data, size, mode, container = source
    note(f"source: {mode} {container} {size}")
    options = ConversionOptions(
        target=target, max_width=max_width, max_height=max_height, strip_metadata=strip
    )
    result = convert_image(data, options, LIMITS)
    out = Image.open(BytesIO(result.data))
    out.load()
    assert out.format == PILLOW_NAME[target]
    assert out.size == (result.width, result.height) == fit_within(*size, max_width, max_height)
    assert max_width is None or out.width <= max_width
    assert max_height is None or out.height <= max_height
    assert out.width <= size[0]
    assert out.height <= size[1]


@given(
    width=st.integers(1, 100_000),
    height=st.integers(1, 100_000),
    max_width=bounds,
    max_height=bounds,
)
def test_fit_within_respects_bounds_and_aspect(
    width: int, height: int, max_width: int | None, max_height: int | None
) -> None:
    w, h = fit_within(width, height, max_width, max_height)
    assert 1 <= w <= width
    assert 1 <= h <= height
    assert max_width is None or w <= max_width
    assert max_height is None or h <= max_height
    if (w, h) != (width, height):
        # Aspect kept within the rounding of one pixel on each side.
        assert abs(w * height - h * width) <= max(width, height)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    container = draw(st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP", "AVIF"]))
    data = bytearray(encode(quadrants(24, 16), container))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut])


def _outcome(call: Callable[[], object]) -> ImgconvError | None:
    try:
        call()
    except ImgconvError as exc:
        return exc
    return None


@settings(max_examples=150, deadline=None)
@given(data=damaged(), target=st.sampled_from(list(ImageFormat)))
def test_damaged_input_gives_a_domain_error_or_an_image(data: bytes, target: ImageFormat) -> None:
    def convert_and_decode() -> None:
        result = convert_image(data, ConversionOptions(target=target), LIMITS)
        Image.open(BytesIO(result.data)).load()

    # Any other exception fails the test. A damaged header may claim any size, so "too
    # large" answers are fine too, but never a 5xx.
    error = _outcome(convert_and_decode)
    assert error is None or status_of(error) < 500, error
    assert error is None or "/" not in error.message


@settings(max_examples=150, deadline=None)
@given(data=st.binary(min_size=0, max_size=256))
def test_random_bytes_never_crash_inspection(data: bytes) -> None:
    error = _outcome(lambda: inspect_image(data, LIMITS))
    assert error is None or error.code in {
        "empty_file",
        "not_an_image",
        "unsupported_source_format",
        "decode_failed",
    }
