"""Walk a GIF's block structure (no LZW decoding) to learn its true canvas and frame count."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GifGeometry:
    """Canvas size as Pillow will decode it (frames may extend the logical screen)."""

    width: int
    height: int
    frames: int


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    end = len(data)
    while pos < end:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos
    return end


def scan_gif(data: bytes) -> GifGeometry | None:
    """Return the canvas and frame count of a GIF; None if there is no logical screen."""
    # Pillow grows the canvas when a frame extends past the logical screen, and allocates
    # a frame-sized buffer while seeking, before any decode; so the limit must see every
    # frame's extent up front. Truncated files yield what was found before the cut.
    if len(data) < 13 or not data.startswith((b"GIF87a", b"GIF89a")):
        return None
    width = int.from_bytes(data[6:8], "little")
    height = int.from_bytes(data[8:10], "little")
    flags = data[10]
    pos = 13
    if flags & 0x80:
        pos += 3 << ((flags & 7) + 1)
    frames = 0
    end = len(data)
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag == 0x3B:  # trailer
            break
        if tag == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 1)
        elif tag == 0x2C:  # image descriptor
            if pos + 9 > end:
                break
            left = int.from_bytes(data[pos : pos + 2], "little")
            top = int.from_bytes(data[pos + 2 : pos + 4], "little")
            frame_w = int.from_bytes(data[pos + 4 : pos + 6], "little")
            frame_h = int.from_bytes(data[pos + 6 : pos + 8], "little")
            local = data[pos + 8]
            pos += 9
            if local & 0x80:
                pos += 3 << ((local & 7) + 1)
            frames += 1
            width = max(width, left + frame_w)
            height = max(height, top + frame_h)
            pos = _skip_sub_blocks(data, pos + 1)  # after the LZW minimum code size
        # Any other byte is skipped, as Pillow does.
    return GifGeometry(width=width, height=height, frames=max(frames, 1))
