"""`pid_alive`: what the claim recovery and the metrics cleanup both rely on."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from imgconv_core.processes import pid_alive


def test_a_running_process_is_alive_and_a_killed_one_is_not_even_before_it_is_reaped() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        # Not reaped yet: a zombie, which kill(pid, 0) still finds.
        deadline = time.monotonic() + 60
        while pid_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child.pid)
        assert child.poll() is not None  # it was a zombie until now
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)
