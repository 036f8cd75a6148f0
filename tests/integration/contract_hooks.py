"""Schemathesis hooks for the contract test: what the OpenAPI document cannot say by itself.

An upload's `file` parts are `format: binary` with `contentMediaType: image/*`: the fuzzer
cannot make an image from that, so this teaches it to (small images in every format we read).
Loaded with SCHEMATHESIS_HOOKS=tests.integration.contract_hooks.
"""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.transport.serialization import Binary

FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]


@st.composite
def images(draw: st.DrawFn) -> Binary:
    """A small valid image in one of the formats the API reads."""
    fmt = draw(st.sampled_from(FORMATS))
    size = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    colour = draw(st.tuples(*[st.integers(0, 255)] * 3))
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return Binary(out.getvalue())


schemathesis.openapi.format("binary", images())
