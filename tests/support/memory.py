"""What an API process holds: its memory figures from /proc, and its upload budget's gauge."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

MIB = 1024 * 1024


def kib_of(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM` figure of a process and its children, in bytes."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    total = 0
    for each in pids:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{each}/status").read_text(), re.M)
        assert match, f"no {field} for {each}"
        total += int(match.group(1)) * 1024
    return total


def bytes_held(url: str) -> float:
    """The upload bytes the API at `url` holds now (its budget gauge)."""
    metrics = httpx.get(f"{url}/metrics").text
    match = re.search(r"^imgconv_api_upload_bytes_held (\S+)$", metrics, re.M)
    assert match, "no imgconv_api_upload_bytes_held metric"
    return float(match.group(1))
