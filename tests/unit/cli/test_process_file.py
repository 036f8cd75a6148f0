"""The checks behind `imgconv worker-liveness` and `imgconv healthcheck`."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgconv_cli.process_file import check_process, heartbeat_age


def test_heartbeat_age_is_the_time_since_the_file_was_touched(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    assert heartbeat_age(beat) is None
    beat.touch()
    os.utime(beat, (1000.0, 1000.0))
    assert heartbeat_age(beat, now=1042.0) == pytest.approx(42.0)


def test_a_stale_or_missing_heartbeat_makes_a_worker_unhealthy(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    facts = {"role": "worker", "heartbeat_file": str(beat), "max_age_seconds": 60}
    assert check_process(facts)[0] is False
    beat.touch()
    assert check_process(facts)[0] is True
    old = beat.stat().st_mtime - 120
    os.utime(beat, (old, old))
    healthy, why = check_process(facts)
    assert healthy is False
    assert "old" in why


@pytest.fixture
def health_server() -> Iterator[tuple[str, list[int]]]:
    """An HTTP server answering /healthz with the status at the end of the returned list."""
    statuses = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses[-1])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/healthz", statuses
    server.shutdown()


def test_api_health_is_asked_over_http(health_server: tuple[str, list[int]]) -> None:
    url, statuses = health_server
    assert check_process({"role": "api", "health_url": url})[0] is True
    statuses.append(503)
    assert check_process({"role": "api", "health_url": url})[0] is False


def test_nothing_listening_is_unhealthy() -> None:
    facts = {"role": "operator", "health_url": "http://127.0.0.1:9/healthz"}
    assert check_process(facts)[0] is False
