"""Reading files with Pillow: which errors mean "damaged file", and the scope they apply to."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import pillow_heif
from PIL import Image

from imgconv_core.errors import ImageDecodeError, ImageTooLarge

# Done once at import: HEIC support, and Pillow's decompression-bomb guard switched off
# because our own limits (frames x pixels, checked from the header before any decoding)
# are stricter and raise proper domain errors instead of warnings or a 500.
pillow_heif.register_heif_opener()
Image.MAX_IMAGE_PIXELS = None

# What Pillow and its plugins raise while reading malformed data. Each type was seen from
# damaged files, including the three that look like programming errors: TypeError (a TIFF
# page without dimensions), KeyError (a TIFF with an unknown compression) and RuntimeError
# (Pillow's AVIF decoder on a damaged AV1 picture: "Decoding of color planes failed"); the
# three have tests in tests/unit/images/test_decoding.py. So the set cannot be smaller; what
# keeps our own bugs out of it is the scope: it is caught only around Pillow reading the file
# (`reading`, open, seek, load, EXIF parsing), never around our resizing, colour or metadata
# code, nor the encoder. MemoryError is left out: running out of memory says nothing about
# the file.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    RuntimeError,
    struct.error,
    zlib.error,
    ArithmeticError,
)


def decode_error(fmt: str, exc: BaseException) -> ImageDecodeError:
    """The user-facing error for damaged pixel data; Pillow's reason only if it has no path."""
    reason = str(exc).split("\n", 1)[0][:200]
    suffix = f" ({reason})" if reason and "/" not in reason and "\\" not in reason else ""
    return ImageDecodeError(
        f"The {fmt.upper()} image is truncated or corrupt and cannot be decoded{suffix}."
    )


@contextmanager
def reading(fmt: str) -> Iterator[None]:
    """Scope in which Pillow reads the file: its errors become `ImageDecodeError`."""
    try:
        yield
    except Image.DecompressionBombError as exc:  # only if Pillow's guard was re-enabled
        raise ImageTooLarge(f"The image is too large: {exc}") from None
    except DECODE_ERRORS as exc:
        raise decode_error(fmt, exc) from None
