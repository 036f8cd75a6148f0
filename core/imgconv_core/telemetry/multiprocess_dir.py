"""The Prometheus multiprocess directory, found and emptied without importing prometheus_client.

A component must empty it before any metric of its own is created: an unlabelled counter or
gauge opens this process's file (`counter_<pid>.db`, `gauge_livesum_<pid>.db`) when it is
defined, at import, and every later metric of the same kind in this process writes to that
same open file. Deleting it afterwards leaves the process writing to a file no scrape reads.
So this module imports nothing that defines metrics, and a launcher calls
`prepare_multiprocess_dir()` before it imports the code it launches.
"""

from __future__ import annotations

import os
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    """The multiprocess directory of this process, or None in single-process mode."""
    raw = os.environ.get(MULTIPROC_ENV)
    return Path(raw) if raw else None


def prepare_multiprocess_dir() -> Path | None:
    """Create and empty the multiprocess directory (call once, as the component starts, before
    it defines any metric or forks): files of an earlier run would otherwise add to this run's
    counters."""
    path = multiprocess_dir()
    if path is None:
        return None
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob("*.db"):
        leftover.unlink(missing_ok=True)
    return path
