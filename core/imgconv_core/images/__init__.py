"""Pure image code: sniffing, header inspection and conversion over bytes (no I/O, no DB)."""

from imgconv_core.images.convert import ConversionOptions, ConvertedImage, convert_image
from imgconv_core.images.formats import EXTENSIONS, MIME_TYPES, ImageFormat, parse_target_format
from imgconv_core.images.inspect import ImageInfo, ImageLimits, inspect_image

__all__ = [
    "EXTENSIONS",
    "MIME_TYPES",
    "ConversionOptions",
    "ConvertedImage",
    "ImageFormat",
    "ImageInfo",
    "ImageLimits",
    "convert_image",
    "inspect_image",
    "parse_target_format",
]
