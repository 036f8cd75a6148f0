"""Test images made on the fly (no binary fixtures in git), for unit tests, integration tests
and benchmarks alike."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from typing import Any

from PIL import Image, ImageCms

from imgconv_core.images.inspect import ImageLimits

LIMITS = ImageLimits(max_pixels=50_000_000, max_frames=1000)


def photo(
    width: int = 640, height: int = 480, fmt: str = "JPEG", seed: int = 1, **save: Any
) -> bytes:
    """A photo-like image (smooth gradients plus sensor-like noise) encoded as `fmt`.

    Different seeds give different pictures (the noise strength), so uploads of two photos
    of one size never share bytes.
    """
    gradient = Image.linear_gradient("L")
    r = gradient.resize((width, height))
    g = gradient.rotate(90).resize((width, height))
    b = Image.radial_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 47 + seed)
    rgb = Image.merge("RGB", [Image.blend(channel, noise, 0.25) for channel in (r, g, b)])
    out = BytesIO()
    rgb.save(out, fmt, **save)
    return out.getvalue()


def format_of(data: bytes) -> str | None:
    """The format Pillow reads from these bytes."""
    with Image.open(BytesIO(data)) as image:
        return image.format


RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)

# Orientation -> the operation that turns the displayed picture into the stored one
# (the inverse of what a viewer applies).
STORED_FROM_DISPLAYED: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode(im: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    """Save an image to bytes with Pillow."""
    out = BytesIO()
    im.save(out, format=fmt, **kwargs)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    """Open bytes with Pillow and load them."""
    im = Image.open(BytesIO(data))
    im.load()
    return im


def quadrants(width: int = 80, height: int = 60) -> Image.Image:
    """RGB picture with red, green, blue and white quadrants (TL, TR, BL, BR)."""
    im = Image.new("RGB", (width, height), WHITE)
    im.paste(RED, (0, 0, width // 2, height // 2))
    im.paste(GREEN, (width // 2, 0, width, height // 2))
    im.paste(BLUE, (0, height // 2, width // 2, height))
    return im


def quadrant_colours(im: Image.Image) -> list[tuple[int, ...]]:
    """Colour at the centre of each quadrant (TL, TR, BL, BR), as RGB."""
    rgb = im.convert("RGB")
    w, h = rgb.size
    points = [
        (w // 4, h // 4),
        (3 * w // 4, h // 4),
        (w // 4, 3 * h // 4),
        (3 * w // 4, 3 * h // 4),
    ]
    result = []
    for p in points:
        value = rgb.getpixel(p)
        assert isinstance(value, tuple)
        result.append(value)
    return result


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 40) -> bool:
    """Whether two colours are equal within a per-channel tolerance (lossy codecs)."""
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def srgb_icc() -> bytes:
    """A real sRGB ICC profile."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def half_transparent(mode: str = "RGBA", size: tuple[int, int] = (40, 20)) -> Image.Image:
    """Left half opaque dark red (or dark grey for LA), right half fully transparent."""
    w, h = size
    if mode == "LA":
        im = Image.new("LA", size, (0, 0))
        im.paste((40, 255), (0, 0, w // 2, h))
        return im
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    im.paste((150, 0, 0, 255), (0, 0, w // 2, h))
    return im


def palette_with_transparency(size: tuple[int, int] = (40, 20)) -> Image.Image:
    """P image: left half index 1 (blue), right half index 0 declared transparent."""
    im = Image.new("P", size, 0)
    im.putpalette([0, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    im.paste(1, (0, 0, size[0] // 2, size[1]))
    im.info["transparency"] = 0
    return im


def animation(
    frames: int = 4, size: tuple[int, int] = (40, 30), *, alpha: bool = False
) -> list[Image.Image]:
    """Frames of distinct colours; with alpha, the right half of each frame is transparent."""
    result = []
    for i in range(frames):
        colour = ((i * 60) % 256, 255 - (i * 60) % 256, 80)
        if alpha:
            im = Image.new("RGBA", size, (0, 0, 0, 0))
            im.paste((*colour, 255), (0, 0, size[0] // 2, size[1]))
        else:
            im = Image.new("RGB", size, colour)
        result.append(im)
    return result


def encode_animation(frames: list[Image.Image], fmt: str, durations: list[int], **kw: Any) -> bytes:
    """Save frames as an animation."""
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=durations, **kw)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming the given size with almost no image data (a cheap 'bomb')."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)


def sixteen_bit_gradient(size: tuple[int, int] = (64, 16)) -> Image.Image:
    """I;16 image whose columns go from 0 to 65535."""
    w, h = size
    im = Image.new("I;16", size)
    for x in range(w):
        value = round(x * 65535 / (w - 1))
        for y in range(h):
            im.putpixel((x, y), value)
    return im


def exif_with(orientation: int | None = None, make: str | None = None) -> Image.Exif:
    """An EXIF block with the given orientation and camera make."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if make is not None:
        exif[0x010F] = make
    return exif


def rgb_at(im: Image.Image, xy: tuple[int, int], mode: str = "RGB") -> tuple[int, ...]:
    """The pixel at xy as an RGB (or RGBA) tuple."""
    value = im.convert(mode).getpixel(xy)
    assert isinstance(value, tuple)
    return tuple(int(v) for v in value)


def grey_at(im: Image.Image, xy: tuple[int, int]) -> int:
    """The pixel at xy of a single-band image, as an int."""
    value = im.getpixel(xy)
    assert isinstance(value, (int, float))
    return int(value)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_with_late_exif(im: Image.Image, exif: Image.Exif) -> bytes:
    """A PNG whose eXIf chunk comes after the image data (allowed by the spec)."""
    data = encode(im, "PNG")
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + png_chunk(b"eXIf", exif.tobytes()[6:]) + data[iend:]


def gif_with_frame_extent(screen: tuple[int, int], frames: list[tuple[int, int]]) -> bytes:
    """A GIF whose image descriptors claim the given sizes (pixel data is a stub)."""
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    for width, height in frames:
        out += b"!\xf9\x04\x08\x0a\x00\x00\x00"  # graphic control: dispose to background
        out += b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
        out += b"\x02\x02\x4c\x01\x00"  # LZW minimum code size 2, one tiny sub-block
    return out + b";"


def gif_from_frames(
    screen: tuple[int, int], frames: list[Image.Image], *, first_without_colours: bool = False
) -> bytes:
    """An animated GIF with the given logical screen; frames may extend past it.

    The file has no global colour table; `first_without_colours` drops the first frame's
    local one too (a damaged file: Pillow decodes that frame as greyscale).
    """
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0, 0, 0)
    for index, frame in enumerate(frames):
        single = encode(frame.convert("P", palette=Image.Palette.ADAPTIVE), "GIF")
        flags = single[10]
        table = single[13 : 13 + (3 << ((flags & 7) + 1))] if flags & 0x80 else b""
        pos = 13 + len(table)
        while single[pos] == 0x21:  # skip extensions before the image descriptor
            pos += 2
            while single[pos]:
                pos += single[pos] + 1
            pos += 1
        assert single[pos] == 0x2C
        if index == 0 and first_without_colours:
            table = b""
        descriptor = single[pos : pos + 9] + bytes([0x80 | (flags & 7) if table else 0])
        out += b"!\xf9\x04\x00\x0a\x00\x00\x00" + descriptor + table + single[pos + 10 : -1]
    return out + b";"


def _tiff_entry(data: bytes, page: int, tag: int) -> int:
    """Offset of a tag's 12-byte entry in a little-endian TIFF's directory of `page`."""
    assert data[:4] == b"II*\x00"
    ifd: int = struct.unpack_from("<I", data, 4)[0]
    for _ in range(page):
        (entries,) = struct.unpack_from("<H", data, ifd)
        ifd = struct.unpack_from("<I", data, ifd + 2 + 12 * entries)[0]
    (entries,) = struct.unpack_from("<H", data, ifd)
    for i in range(entries):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == tag:
            return entry
    raise AssertionError(f"page {page} has no tag {tag}")


def tiff_with_tag_value(data: bytes, page: int, tag: int, value: int) -> bytes:
    """The TIFF with one SHORT tag of one page set to `value` (Pillow writes uncompressed)."""
    patched = bytearray(data)
    entry = _tiff_entry(data, page, tag)
    assert struct.unpack_from("<HI", data, entry + 2) == (3, 1)  # one SHORT, stored inline
    struct.pack_into("<H", patched, entry + 8, value)
    return bytes(patched)


def tiff_without_tag(data: bytes, page: int, tag: int) -> bytes:
    """The TIFF with one tag of one page renamed to a private tag nobody reads."""
    patched = bytearray(data)
    struct.pack_into("<H", patched, _tiff_entry(data, page, tag), 65_000)
    return bytes(patched)


def tiff_with_associated_alpha(im: Image.Image) -> bytes:
    """An uncompressed TIFF of an LA or RGBA image whose alpha is marked premultiplied."""
    # Pillow writes alpha as unassociated (ExtraSamples = 2); associated is 1, which Pillow
    # decodes as mode La (greyscale) or unpremultiplies to RGBA.
    return tiff_with_tag_value(encode(im, "TIFF"), 0, 338, 1)


def corrupt_png() -> bytes:
    """A PNG whose header passes the upload checks but whose pixels cannot be decoded."""
    data = bytearray(photo(64, 64, "PNG"))
    start = data.index(b"IDAT") + 20
    data[start : start + 40] = bytes(b ^ 0x5A for b in data[start : start + 40])
    return bytes(data)


def bmp_of_about(size: int) -> bytes:
    """An uncompressed BMP of about `size` bytes (a valid image of a few megapixels)."""
    width = 2048
    height = size // (width * 3)
    out = BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(out, "BMP")
    return out.getvalue()
