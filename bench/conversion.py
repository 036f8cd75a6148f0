"""Component benchmark: `convert_image` against raw Pillow doing the same conversion.

Run with `python -m bench.conversion`; `run()` returns the rows for `make bench`.
Each case alternates ours and raw Pillow in one process, so load from other processes on
the machine hits both sides alike; the median of the repeats is reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO

from PIL import Image

from imgconv_core.images.convert import ConversionOptions, convert_image, fit_within
from imgconv_core.images.formats import ImageFormat
from imgconv_core.images.inspect import inspect_image
from tests.support.images import LIMITS, photo


def photo_jpeg(width: int, height: int, quality: int = 90) -> bytes:
    """The benchmarks' source image: a generated photo-like JPEG."""
    return photo(width, height, "JPEG", quality=quality)


@dataclass(frozen=True)
class Case:
    name: str
    source: bytes
    ours: Callable[[], bytes]
    raw: Callable[[], bytes]


def raw_pillow_convert(
    data: bytes, fmt: str, size: tuple[int, int] | None = None, **kwargs: object
) -> bytes:
    """The reference: plain Pillow opening, optionally resizing (Lanczos) and saving."""
    im: Image.Image = Image.open(BytesIO(data))
    if size is not None and size != im.size:
        im = im.resize(size, Image.Resampling.LANCZOS)
    out = BytesIO()
    im.save(out, fmt, **kwargs)
    return out.getvalue()


def _ours(data: bytes, options: ConversionOptions) -> Callable[[], bytes]:
    return lambda: convert_image(data, options, LIMITS).data


def cases() -> list[Case]:
    """The conversions the issue names, with identical encoder settings on both sides."""
    one_mp = photo_jpeg(1152, 864)
    twelve_mp = photo_jpeg(4000, 3000)
    downscaled = fit_within(4000, 3000, 1024, None)
    return [
        Case(
            "1-MP JPEG -> PNG",
            one_mp,
            _ours(one_mp, ConversionOptions(target=ImageFormat.PNG)),
            lambda: raw_pillow_convert(one_mp, "PNG"),
        ),
        Case(
            "12-MP JPEG -> WebP q85",
            twelve_mp,
            _ours(twelve_mp, ConversionOptions(target=ImageFormat.WEBP, quality=85)),
            lambda: raw_pillow_convert(twelve_mp, "WEBP", quality=85),
        ),
        Case(
            "12-MP JPEG -> JPEG q85, fit 1024 (draft)",
            twelve_mp,
            _ours(
                twelve_mp, ConversionOptions(target=ImageFormat.JPEG, quality=85, max_width=1024)
            ),
            lambda: raw_pillow_convert(twelve_mp, "JPEG", downscaled, quality=85),
        ),
    ]


def _time(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(repeats: int = 7) -> list[dict[str, object]]:
    """Time each case (median of `repeats`, ours and raw interleaved); one row per case.

    The ratio is reported on wall time and on this process's CPU time: on a shared
    machine the CPU-time ratio is the steadier one (these encoders are single-threaded).
    """
    rows: list[dict[str, object]] = []
    for case in cases():
        case.ours()  # warm-up: plugin imports, first-touch allocations
        case.raw()
        ours: list[tuple[float, float]] = []
        raw: list[tuple[float, float]] = []
        for i in range(repeats):
            # Alternate who goes first so neither side always gets the warmer cache.
            pair = [(ours, case.ours), (raw, case.raw)]
            for bucket, fn in pair if i % 2 == 0 else reversed(pair):
                bucket.append(_time(fn))
        ours_ms = statistics.median(w for w, _ in ours) * 1000
        raw_ms = statistics.median(w for w, _ in raw) * 1000
        ours_cpu = statistics.median(c for _, c in ours) * 1000
        raw_cpu = statistics.median(c for _, c in raw) * 1000
        rows.append(
            {
                "case": case.name,
                "ours_ms": round(ours_ms, 1),
                "raw_pillow_ms": round(raw_ms, 1),
                "ratio_wall": round(ours_ms / raw_ms, 3),
                "ratio_cpu": round(ours_cpu / raw_cpu, 3),
                "ours_per_s": round(1000 / ours_ms, 2),
                "raw_per_s": round(1000 / raw_ms, 2),
            }
        )
    twelve_mp = photo_jpeg(4000, 3000)
    inspect_s = [_time(lambda: inspect_image(twelve_mp, LIMITS))[0] for _ in range(50)]
    rows.append(
        {
            "case": "inspect_image, 12-MP JPEG (upload path)",
            "ours_ms": round(statistics.median(inspect_s) * 1000, 3),
            "raw_pillow_ms": None,
            "ratio_wall": None,
            "ratio_cpu": None,
            "ours_per_s": round(1 / statistics.median(inspect_s), 1),
            "raw_per_s": None,
        }
    )
    return rows


def format_table(rows: list[dict[str, object]]) -> str:
    """Render rows as a plain-text table."""
    columns = list(rows[0])
    cells = [[("-" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells)
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_table(run()))
