"""Test images made on the fly (no binary fixtures in git)."""

from __future__ import annotations

import io
import random

from PIL import Image


def photo(
    width: int = 640, height: int = 480, fmt: str = "JPEG", seed: int = 1, **save: object
) -> bytes:
    """A photo-like image (gradient plus noise) encoded as `fmt`."""
    rng = random.Random(seed)
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40 + rng.random() * 10)
    image = Image.merge(
        "RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    )
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def format_of(data: bytes) -> str | None:
    """The format Pillow reads from these bytes."""
    with Image.open(io.BytesIO(data)) as image:
        return image.format
