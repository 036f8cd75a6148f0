"""Whether a process on this host is still running (workers' claims, multiprocess metrics)."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (dead, its exit status not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    # A killed process stays a zombie until its parent (or, once that died too, init) reaps
    # it: dead all the same.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS): kill(0) is all we know
        return True
    # The state is the field after the command name, which is in parentheses and may hold any
    # character, ")" and spaces included.
    return stat.rpartition(")")[2].split()[0] != "Z"
