from __future__ import annotations

from io import BytesIO

import pytest
from PIL import Image, ImageSequence, JpegImagePlugin

from imgconv_core.errors import (
    ImageDecodeError,
    ImageTooLarge,
    InvalidRequest,
    UnsupportedFormat,
)
from imgconv_core.images.convert import ConversionOptions, convert_image, fit_within
from imgconv_core.images.formats import PILLOW_FORMATS, ImageFormat
from imgconv_core.images.inspect import ImageLimits, inspect_image
from tests.support.images import (
    BLUE,
    GREEN,
    LIMITS,
    RED,
    STORED_FROM_DISPLAYED,
    WHITE,
    animation,
    close,
    decode,
    encode,
    encode_animation,
    exif_with,
    gif_from_frames,
    grey_at,
    half_transparent,
    palette_with_transparency,
    png_with_late_exif,
    quadrant_colours,
    quadrants,
    rgb_at,
    sixteen_bit_gradient,
    srgb_icc,
)

SOURCES = PILLOW_FORMATS  # every source format, by its Pillow writer name
PILLOW_NAME = {
    ImageFormat.JPEG: "JPEG",
    ImageFormat.PNG: "PNG",
    ImageFormat.WEBP: "WEBP",
    ImageFormat.GIF: "GIF",
    ImageFormat.BMP: "BMP",
    ImageFormat.TIFF: "TIFF",
    ImageFormat.AVIF: "AVIF",
}
EXIF_TARGETS = [
    ImageFormat.JPEG,
    ImageFormat.PNG,
    ImageFormat.WEBP,
    ImageFormat.TIFF,
    ImageFormat.AVIF,
]
ANIMATED = [ImageFormat.GIF, ImageFormat.WEBP, ImageFormat.PNG, ImageFormat.AVIF]
EXPECTED_QUADRANTS = [RED, GREEN, BLUE, WHITE]


def convert(data: bytes, target: ImageFormat, **kwargs: object) -> Image.Image:
    result = convert_image(data, ConversionOptions(target=target, **kwargs), LIMITS)  # type: ignore[arg-type]
    im = decode(result.data)
    assert im.format == PILLOW_NAME[target]
    assert (result.width, result.height) == im.size
    assert result.format is target
    assert result.mime_type == Image.MIME[PILLOW_NAME[target]]
    return im


@pytest.mark.parametrize("target", list(ImageFormat))
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_source_converts_to_every_target(source: str, target: ImageFormat) -> None:
    data = encode(quadrants(64, 48), SOURCES[source])
    im = convert(data, target)
    assert im.size == (64, 48)
    got = quadrant_colours(im)
    assert all(close(g, e, 60) for g, e in zip(got, EXPECTED_QUADRANTS, strict=True)), got


@pytest.mark.parametrize(
    ("max_width", "max_height", "expected"),
    [
        (100, None, (100, 75)),
        (None, 30, (40, 30)),
        (100, 30, (40, 30)),
        (1000, 1000, (400, 300)),
        (400, 300, (400, 300)),
        (1, 1, (1, 1)),
    ],
)
@pytest.mark.parametrize("source", ["JPEG", "PNG"])
def test_resize_fits_inside_and_never_upscales(
    source: str, max_width: int | None, max_height: int | None, expected: tuple[int, int]
) -> None:
    data = encode(quadrants(400, 300), source)
    im = convert(data, ImageFormat.PNG, max_width=max_width, max_height=max_height)
    assert im.size == expected


def test_jpeg_draft_downscale_keeps_the_picture_aligned() -> None:
    # 1/8-scale decode + resample must land exactly where a full decode + resample would.
    big = quadrants(1603, 1201)  # sizes not divisible by 8 exercise the draft box
    data = encode(big, "JPEG", quality=95)
    im = convert(data, ImageFormat.PNG, max_width=200)
    assert im.size == (200, 150)
    reference = decode(data).resize((200, 150), Image.Resampling.LANCZOS)
    diff = [abs(a - b) for a, b in zip(im.tobytes(), reference.tobytes(), strict=True)]
    assert sum(diff) / len(diff) < 3
    assert [close(g, e, 30) for g, e in zip(quadrant_colours(im), EXPECTED_QUADRANTS, strict=True)]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("strip", [True, False])
def test_exif_orientation_is_applied_and_then_removed(orientation: int, strip: bool) -> None:
    op = STORED_FROM_DISPLAYED[orientation]
    displayed = quadrants(80, 60)
    stored = displayed if op is None else displayed.transpose(op)
    data = encode(stored, "JPEG", quality=95, exif=exif_with(orientation=orientation, make="Cam"))
    im = convert(data, ImageFormat.JPEG, strip_metadata=strip)
    assert im.size == (80, 60)
    got = quadrant_colours(im)
    assert all(close(g, e) for g, e in zip(got, EXPECTED_QUADRANTS, strict=True)), got
    assert 0x0112 not in im.getexif()
    assert (im.getexif().get(0x010F) == "Cam") is (not strip)


def test_exif_orientation_with_resize() -> None:
    stored = quadrants(800, 600).transpose(Image.Transpose.ROTATE_90)  # 600 x 800 stored
    data = encode(stored, "JPEG", quality=95, exif=exif_with(orientation=6))
    im = convert(data, ImageFormat.WEBP, max_width=200)
    assert im.size == (200, 150)
    got = quadrant_colours(im)
    assert all(close(g, e) for g, e in zip(got, EXPECTED_QUADRANTS, strict=True)), got


@pytest.mark.parametrize("target", [ImageFormat.JPEG, ImageFormat.BMP])
@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(half_transparent("RGBA"), "PNG"),
        lambda: encode(half_transparent("LA"), "PNG"),
        lambda: encode(palette_with_transparency(), "PNG"),
        lambda: encode(palette_with_transparency(), "GIF"),
        lambda: encode(half_transparent("RGBA"), "WEBP", lossless=True),
    ],
    ids=["rgba-png", "la-png", "p-trns-png", "p-trns-gif", "rgba-webp"],
)
def test_alpha_is_flattened_on_white(target: ImageFormat, make: object) -> None:
    data = make()  # type: ignore[operator]
    im = convert(data, target)
    assert im.mode in ("RGB", "L")
    assert close(rgb_at(im, (35, 10)), WHITE, 8)
    left = rgb_at(im, (5, 10))
    assert not close(left, WHITE, 60)  # the opaque half is not washed out


@pytest.mark.parametrize(
    "target",
    [ImageFormat.PNG, ImageFormat.WEBP, ImageFormat.AVIF, ImageFormat.TIFF, ImageFormat.GIF],
)
@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(half_transparent("RGBA"), "PNG"),
        lambda: encode(half_transparent("LA"), "PNG"),
        lambda: encode(palette_with_transparency(), "PNG"),
        lambda: encode(palette_with_transparency(), "GIF"),
    ],
    ids=["rgba", "la", "p-trns-png", "p-trns-gif"],
)
def test_transparency_is_kept_where_the_target_has_alpha(target: ImageFormat, make: object) -> None:
    im = convert(make(), target).convert("RGBA")  # type: ignore[operator]
    transparent = rgb_at(im, (35, 10), "RGBA")
    opaque = rgb_at(im, (5, 10), "RGBA")
    assert transparent[3] == 0
    assert opaque[3] == 255


def test_palette_without_transparency_to_jpeg() -> None:
    im = Image.new("P", (40, 20), 0)
    im.putpalette([200, 30, 30] * 256)
    out = convert(encode(im, "GIF"), ImageFormat.JPEG)
    assert close(rgb_at(out, (10, 10)), (200, 30, 30), 10)


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (40, 20), (0, 255, 255, 0))  # red in CMYK
    data = encode(cmyk, "JPEG", quality=95)
    as_jpeg = convert(data, ImageFormat.JPEG)
    assert as_jpeg.mode == "CMYK"  # JPEG can hold CMYK: no lossy colour-space round trip
    assert close(rgb_at(as_jpeg, (10, 10)), RED, 30)
    as_tiff = convert(data, ImageFormat.TIFF)
    assert as_tiff.mode == "CMYK"
    assert close(rgb_at(as_tiff, (10, 10)), RED, 30)
    for target in (ImageFormat.PNG, ImageFormat.WEBP, ImageFormat.BMP, ImageFormat.GIF):
        out = convert(data, target).convert("RGB")
        assert close(rgb_at(out, (10, 10)), RED, 30), target


def test_cmyk_with_broken_profile_falls_back_to_plain_conversion() -> None:
    bogus = bytearray(200)
    bogus[16:20] = b"CMYK"
    data = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", icc_profile=bytes(bogus))
    out = convert(data, ImageFormat.PNG)
    assert "icc_profile" not in out.info
    assert close(rgb_at(out, (4, 4)), RED, 30)


@pytest.mark.parametrize("source", ["PNG", "TIFF"])
def test_sixteen_bit_is_scaled_not_clipped(source: str) -> None:
    data = encode(sixteen_bit_gradient(), source)
    out = convert(data, ImageFormat.JPEG)
    assert out.mode == "L"
    row = [grey_at(out, (x, 0)) for x in (0, 32, 63)]
    assert row[0] < 8
    assert 110 < row[1] < 145  # mid-grey, not clipped to 255
    assert row[2] > 247


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("PNG", ImageFormat.PNG),
        ("TIFF", ImageFormat.TIFF),
        ("PNG", ImageFormat.TIFF),
        ("TIFF", ImageFormat.PNG),
    ],
)
def test_sixteen_bit_is_kept_by_sixteen_bit_targets(source: str, target: ImageFormat) -> None:
    original = sixteen_bit_gradient()
    out = convert(encode(original, source), target)
    assert out.mode.startswith("I;16")
    assert out.getpixel((32, 0)) == original.getpixel((32, 0))
    assert out.getpixel((63, 0)) == 65535


@pytest.mark.parametrize("target", list(ImageFormat))
def test_one_bit_image(target: ImageFormat) -> None:
    im = Image.new("1", (32, 16), 0)
    im.paste(1, (16, 0, 32, 16))
    out = convert(encode(im, "PNG"), target).convert("L")
    assert grey_at(out, (4, 8)) < 30
    assert grey_at(out, (28, 8)) > 225


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "P"])
@pytest.mark.parametrize("target", list(ImageFormat))
def test_every_target_from_simple_modes(mode: str, target: ImageFormat) -> None:
    im = quadrants(40, 30).convert(mode)
    out = convert(encode(im, "PNG"), target)
    assert out.size == (40, 30)


@pytest.mark.parametrize("target", EXIF_TARGETS)
def test_icc_profile_is_kept_when_metadata_is_stripped(target: ImageFormat) -> None:
    icc = srgb_icc()
    data = encode(quadrants(), "JPEG", icc_profile=icc, exif=exif_with(make="Cam"))
    out = convert(data, target, strip_metadata=True)
    assert out.info.get("icc_profile") == icc
    assert out.getexif().get(0x010F) is None


@pytest.mark.parametrize("target", EXIF_TARGETS)
def test_metadata_is_stripped_by_default(target: ImageFormat) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    data = encode(quadrants(), "JPEG", exif=exif_with(make="SecretCam"), xmp=xmp, comment=b"hello")
    result = convert_image(data, ConversionOptions(target=target), LIMITS)
    out = decode(result.data)
    exif = out.getexif()
    assert 0x010F not in exif  # camera make
    assert 0x8769 not in exif  # EXIF sub-IFD
    assert not out.info.get("xmp")
    assert "comment" not in out.info
    assert b"SecretCam" not in result.data
    assert b"hello" not in result.data


def test_tiff_to_tiff_strip_drops_copied_tags() -> None:
    tags = exif_with(make="SecretCam")
    tags[700] = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">SecretXMP</x:xmpmeta>'
    data = encode(quadrants(), "TIFF", tiffinfo=tags)
    assert b"SecretXMP" in data
    result = convert_image(data, ConversionOptions(target=ImageFormat.TIFF), LIMITS)
    assert b"SecretXMP" not in result.data
    assert b"SecretCam" not in result.data


@pytest.mark.parametrize("target", EXIF_TARGETS)
def test_exif_kept_when_not_stripping(target: ImageFormat) -> None:
    icc = srgb_icc()
    data = encode(quadrants(), "JPEG", icc_profile=icc, exif=exif_with(orientation=3, make="Cam"))
    out = convert(data, target, strip_metadata=False)
    exif = out.getexif()
    assert exif.get(0x010F) == "Cam"
    assert exif.get(0x0112, 1) == 1
    assert out.info.get("icc_profile") == icc


@pytest.mark.parametrize("target", ANIMATED)
@pytest.mark.parametrize("source", ["GIF", "WEBP", "PNG"])
def test_animation_is_kept_with_durations(source: str, target: ImageFormat) -> None:
    durations = [100, 200, 300, 400]
    data = encode_animation(animation(4), source, durations, loop=0)
    out = convert(data, target)
    assert getattr(out, "n_frames", 1) == 4
    got = []
    colours = []
    for frame in ImageSequence.Iterator(out):
        frame.load()
        got.append(frame.info.get("duration"))
        colours.append(rgb_at(frame, (5, 5)))
    assert got == durations
    expected = [rgb_at(f, (5, 5)) for f in animation(4)]
    assert all(close(c, e) for c, e in zip(colours, expected, strict=True)), colours


@pytest.mark.parametrize("target", [ImageFormat.GIF, ImageFormat.WEBP, ImageFormat.PNG])
def test_loop_count_is_preserved(target: ImageFormat) -> None:
    data = encode_animation(animation(3), "GIF", [100] * 3, loop=0)
    assert convert(data, target).info.get("loop") == 0
    data = encode_animation(animation(3), "GIF", [100] * 3, loop=2)
    assert convert(data, target).info.get("loop") == 2


@pytest.mark.parametrize("target", ANIMATED)
@pytest.mark.parametrize("source", ["PNG", "GIF"])
def test_animation_with_transparency(source: str, target: ImageFormat) -> None:
    data = encode_animation(animation(3, alpha=True), source, [100] * 3)
    out = convert(data, target)
    assert getattr(out, "n_frames", 1) == 3
    for frame in ImageSequence.Iterator(out):
        assert rgb_at(frame, (35, 5), "RGBA")[3] == 0
        assert rgb_at(frame, (5, 5), "RGBA")[3] == 255


@pytest.mark.parametrize("target", [ImageFormat.JPEG, ImageFormat.BMP])
def test_animation_to_still_format_takes_the_first_frame(target: ImageFormat) -> None:
    data = encode_animation(animation(3), "GIF", [100] * 3)
    out = convert(data, target)
    assert getattr(out, "n_frames", 1) == 1
    assert close(rgb_at(out, (5, 5)), rgb_at(animation(3)[0], (5, 5)))


def test_animation_to_tiff_keeps_frames_as_pages() -> None:
    data = encode_animation(animation(3), "GIF", [100] * 3)
    assert getattr(convert(data, ImageFormat.TIFF), "n_frames", 1) == 3


def test_multi_page_tiff_to_animated_format_takes_the_first_page() -> None:
    data = encode_animation(animation(3), "TIFF", [0] * 3)
    assert getattr(convert(data, ImageFormat.GIF), "n_frames", 1) == 1
    assert getattr(convert(data, ImageFormat.TIFF), "n_frames", 1) == 3


def test_animation_resize_applies_to_every_frame() -> None:
    data = encode_animation(animation(3, (80, 40)), "GIF", [100] * 3)
    out = convert(data, ImageFormat.WEBP, max_width=20)
    assert out.size == (20, 10)
    assert getattr(out, "n_frames", 1) == 3


def test_heic_input() -> None:
    data = encode(quadrants(64, 48), "HEIF", quality=95)
    out = convert(data, ImageFormat.PNG, max_width=32)
    assert out.size == (32, 24)
    assert all(
        close(g, e, 50) for g, e in zip(quadrant_colours(out), EXPECTED_QUADRANTS, strict=True)
    )


def test_heic_with_exif_orientation_is_rotated_once() -> None:
    stored = quadrants(80, 60).transpose(Image.Transpose.ROTATE_90)
    data = encode(stored, "HEIF", quality=95, exif=exif_with(orientation=6).tobytes())
    out = convert(data, ImageFormat.PNG)
    assert out.size == (80, 60)
    assert all(
        close(g, e, 50) for g, e in zip(quadrant_colours(out), EXPECTED_QUADRANTS, strict=True)
    )


def test_target_that_cannot_hold_the_size_says_why() -> None:
    data = encode(Image.new("L", (20_000, 4)), "PNG")
    with pytest.raises(UnsupportedFormat) as exc:
        convert_image(data, ConversionOptions(target=ImageFormat.WEBP), LIMITS)
    assert "16383" in exc.value.message
    # The same image fits once resized.
    out = convert(data, ImageFormat.WEBP, max_width=10_000)
    assert out.size == (10_000, 2)


@pytest.mark.parametrize("source", ["JPEG", "PNG", "GIF", "WEBP", "TIFF"])
def test_truncated_file_is_a_clear_decode_error(source: str) -> None:
    data = encode(quadrants(300, 200).effect_spread(5), source)
    truncated = data[: len(data) // 2]
    with pytest.raises(ImageDecodeError) as exc:
        convert_image(truncated, ConversionOptions(target=ImageFormat.PNG), LIMITS)
    assert exc.value.code == "decode_failed"
    assert "/" not in exc.value.message
    assert "truncated or corrupt" in exc.value.message


def test_limits_are_enforced_by_convert_too() -> None:
    data = encode(quadrants(100, 100), "PNG")
    with pytest.raises(ImageTooLarge):
        convert_image(data, ConversionOptions(target=ImageFormat.JPEG), ImageLimits(9_999, 10))


def test_quality_changes_lossy_output() -> None:
    data = encode(quadrants(200, 150).effect_spread(10), "PNG")
    for target in (ImageFormat.JPEG, ImageFormat.WEBP, ImageFormat.AVIF):
        low = convert_image(data, ConversionOptions(target=target, quality=10), LIMITS).data
        high = convert_image(data, ConversionOptions(target=target, quality=95), LIMITS).data
        assert len(low) < len(high), target


def test_quality_is_ignored_for_lossless_targets() -> None:
    data = encode(quadrants(), "JPEG")
    for target in (ImageFormat.PNG, ImageFormat.TIFF, ImageFormat.BMP, ImageFormat.GIF):
        low = convert_image(data, ConversionOptions(target=target, quality=10), LIMITS).data
        default = convert_image(data, ConversionOptions(target=target), LIMITS).data
        assert low == default, target


def test_same_settings_as_raw_pillow() -> None:
    # With no resize and no metadata, our bytes equal Pillow's for the same encoder settings.
    source = quadrants(120, 90).effect_spread(4)
    data = encode(source, "JPEG", quality=90)
    raw = Image.open(BytesIO(data))
    for target, kwargs in (
        (ImageFormat.PNG, {}),
        (ImageFormat.WEBP, {"quality": 85}),
        (ImageFormat.JPEG, {"quality": 85}),
    ):
        ours = convert_image(
            data, ConversionOptions(target=target, quality=kwargs.get("quality")), LIMITS
        )
        assert ours.data == encode(raw, PILLOW_NAME[target], **kwargs), target


@pytest.mark.parametrize(
    "options",
    [
        ConversionOptions(target=ImageFormat.JPEG, quality=0),
        ConversionOptions(target=ImageFormat.JPEG, quality=101),
        ConversionOptions(target=ImageFormat.PNG, max_width=0),
        ConversionOptions(target=ImageFormat.PNG, max_height=-5),
    ],
)
def test_invalid_options(options: ConversionOptions) -> None:
    with pytest.raises(InvalidRequest):
        convert_image(encode(quadrants(), "PNG"), options, LIMITS)


def test_fit_within_examples() -> None:
    assert fit_within(4000, 3000, 1024, None) == (1024, 768)
    assert fit_within(3000, 4000, 1024, 1024) == (768, 1024)
    assert fit_within(10, 10, 1024, 1024) == (10, 10)
    assert fit_within(10_000, 1, 100, None) == (100, 1)


@pytest.mark.parametrize("target", list(ImageFormat))
@pytest.mark.parametrize("mode", ["F", "RGB", "I;16"])
def test_tiff_source_keeping_metadata_writes_valid_files(mode: str, target: ImageFormat) -> None:
    # A TIFF's IFD0 holds strip offsets, sample formats...: they must not be copied as EXIF.
    im = quadrants(30, 20).convert("L").convert(mode)
    data = encode(im, "TIFF", tiffinfo=exif_with(make="Cam", orientation=1))
    out = convert(data, target, strip_metadata=False, max_height=10)
    assert out.size == (15, 10)
    if target in EXIF_TARGETS:
        assert out.getexif().get(0x010F) == "Cam"


def test_png_orientation_from_an_exif_chunk_after_the_pixels() -> None:
    stored = quadrants(80, 60).transpose(Image.Transpose.ROTATE_90)
    data = png_with_late_exif(stored, exif_with(orientation=6))
    out = convert(data, ImageFormat.PNG)
    assert out.size == (80, 60)
    got = quadrant_colours(out)
    assert all(close(g, e) for g, e in zip(got, EXPECTED_QUADRANTS, strict=True)), got


def test_tiff_pages_keep_their_own_sizes() -> None:
    first, second = quadrants(80, 60), quadrants(40, 100)
    data = encode(first, "TIFF", save_all=True, append_images=[second])
    out = convert(data, ImageFormat.TIFF, max_height=50)
    sizes = []
    for page in ImageSequence.Iterator(out):
        sizes.append(page.size)
    assert sizes == [(67, 50), (20, 50)]


def test_gif_frame_that_grows_the_canvas_is_not_stretched() -> None:
    # Frame 0 is 20 x 20 on a 20 x 20 screen; frame 1 extends the canvas to 40 x 20.
    frame0 = Image.new("RGB", (20, 20), RED)
    frame1 = Image.new("RGB", (40, 20), BLUE)
    data = gif_from_frames((20, 20), [frame0, frame1])
    out = convert(data, ImageFormat.PNG)
    assert out.size == (40, 20)
    assert getattr(out, "n_frames", 1) == 2
    assert close(rgb_at(out, (5, 5), "RGBA"), (*RED, 255))
    assert rgb_at(out, (30, 5), "RGBA")[3] == 0  # padding, not a stretched red frame
    out.seek(1)
    assert close(rgb_at(out, (30, 5), "RGBA"), (*BLUE, 255))


def test_oversized_exif_is_dropped_for_jpeg_instead_of_failing() -> None:
    exif = exif_with(make="Cam")
    exif[0x010E] = "x" * 70_000  # image description: too big for a JPEG APP1 segment
    data = encode(quadrants(), "PNG", exif=exif)
    out = convert(data, ImageFormat.JPEG, strip_metadata=False)
    assert 0x010F not in out.getexif()
    assert convert(data, ImageFormat.PNG, strip_metadata=False).getexif().get(0x010F) == "Cam"


def test_jpeg_downscale_decodes_through_draft(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(
        self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None
    ) -> tuple[str, tuple[int, int, float, float]] | None:
        result = original(self, mode, size)
        if size is not None:
            calls.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    data = encode(quadrants(1600, 1200), "JPEG")
    assert convert(data, ImageFormat.JPEG, max_width=200).size == (200, 150)
    assert calls == [(400, 300)]  # decoded at 1/4 scale, then resampled to 200 x 150
    calls.clear()
    convert(data, ImageFormat.JPEG)
    assert calls == []  # no resize, full decode


def test_float_tiff_with_non_finite_values_still_converts() -> None:
    im = Image.new("F", (4, 4), 0.5)
    im.putpixel((0, 0), float("nan"))
    im.putpixel((1, 0), float("inf"))
    out = convert(encode(im, "TIFF"), ImageFormat.PNG)
    assert out.mode == "L"
    assert 120 <= grey_at(out, (3, 3)) <= 135  # 0.5 of a 0..1 range, not black


@pytest.mark.parametrize("source", ["PNG", "WEBP", "TIFF", "AVIF", "HEIF"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_from_every_format_that_carries_it(source: str, orientation: int) -> None:
    op = STORED_FROM_DISPLAYED[orientation]
    assert op is not None
    stored = quadrants(80, 60).transpose(op)
    exif = exif_with(orientation=orientation)
    kwargs: dict[str, object] = {"lossless": True} if source == "WEBP" else {}
    if source == "TIFF":
        kwargs["tiffinfo"] = exif
    elif source == "HEIF":
        kwargs.update(exif=exif.tobytes(), quality=95)
    else:
        kwargs["exif"] = exif
    data = encode(stored, source, **kwargs)
    info = inspect_image(data, LIMITS)
    assert (info.width, info.height) == (80, 60)
    out = convert(data, ImageFormat.PNG, strip_metadata=False)
    assert out.size == (80, 60)
    got = quadrant_colours(out)
    assert all(close(g, e, 50) for g, e in zip(got, EXPECTED_QUADRANTS, strict=True)), got
    assert out.getexif().get(0x0112, 1) == 1
