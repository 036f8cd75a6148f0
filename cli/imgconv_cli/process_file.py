"""What the running process is, written at start to a file in /tmp, so one `imgconv healthcheck`
serves as the container health check whichever subcommand the container runs."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

PROCESS_FILE = Path("/tmp/imgconv-process.json")  # noqa: S108 (the one writable path)
DEFAULT_HEARTBEAT_FILE = Path("/tmp/imgconv-worker.heartbeat")  # noqa: S108


def record_process(role: str, **facts: Any) -> None:
    """Write what `healthcheck` needs to know about this process (best effort)."""
    with contextlib.suppress(OSError):  # a read-only /tmp costs only the container health check
        PROCESS_FILE.write_text(json.dumps({"role": role, **facts}))


def heartbeat_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since the worker's heartbeat file was touched, None when there is none."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return max(0.0, (time.time() if now is None else now) - mtime)


def http_ok(url: str, timeout: float = 3.0) -> bool:
    """Whether `url` answers 2xx within `timeout` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our URL)
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def check_process(facts: dict[str, Any]) -> tuple[bool, str]:
    """Whether the process described by `facts` is healthy, and why."""
    if facts.get("role") == "worker":
        age = heartbeat_age(Path(facts["heartbeat_file"]))
        limit = float(facts["max_age_seconds"])
        if age is None:
            return False, "worker: no heartbeat (the consumer is not connected)"
        ok = age <= limit
        return ok, f"worker: heartbeat {age:.0f} s old (limit {limit:.0f} s)"
    url = facts.get("health_url")
    if url:
        ok = http_ok(str(url))
        return ok, f"{facts.get('role')}: {url} {'answers' if ok else 'does not answer'}"
    return True, f"{facts.get('role', 'process')}: nothing to check"
