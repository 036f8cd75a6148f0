"""`make up`'s local Prometheus: Debian's prometheus started by the supervisor, scraping the
targets it is given and loading the alert rules, with its URL in the banner."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from scripts import run_local
from scripts.run_local import Started, Supervisor
from tests.support.observability import tool, wait_for
from tests.support.services import free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_make_up_starts_a_prometheus_that_scrapes_the_local_processes() -> None:
    tool("prometheus")
    registry = CollectorRegistry()
    Counter(
        "imgconv_local_probe_total", "A target of the local Prometheus", registry=registry
    ).inc()
    target_port = free_port()
    server, thread = start_http_server(target_port, addr="127.0.0.1", registry=registry)
    data_dir = Path(tempfile.mkdtemp(prefix="imgconv-local-prom-"))
    env = {"IMGCONV_LOCAL_DATA_DIR": str(data_dir), "IMGCONV_LOCAL_FRONTEND": "0"}
    env["IMGCONV_LOCAL_PROMETHEUS_PORT"] = str(free_port())
    cfg = run_local.load_config(env, REPO_ROOT)
    lines: list[str] = []
    sup = Supervisor(write=lines.append)
    try:
        url = run_local.start_prometheus(sup, cfg, env, {"imgconv-api": f"127.0.0.1:{target_port}"})
        assert url == f"http://127.0.0.1:{env['IMGCONV_LOCAL_PROMETHEUS_PORT']}"

        def scraped() -> bool:
            body = httpx.get(
                f"{url}/api/v1/query", params={"query": "imgconv_local_probe_total"}, timeout=5
            ).json()
            return bool(body["data"]["result"])

        wait_for(scraped, 30, "the local Prometheus never scraped its target")
        groups = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert [g["name"] for g in groups] == ["imgconv"]
        banner = run_local.banner(Started(api_url="http://127.0.0.1:8000", prometheus_url=url), cfg)
        assert any(line.strip().startswith("metrics") and url in line for line in banner)
    finally:
        sup.stop_all()
        server.shutdown()
        thread.join(5)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_without_prometheus_installed_make_up_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_local, "PROMETHEUS_BINARY", "no-such-prometheus-binary")
    env = {"IMGCONV_LOCAL_DATA_DIR": tempfile.mkdtemp(), "IMGCONV_LOCAL_FRONTEND": "0"}
    cfg = run_local.load_config(env, REPO_ROOT)
    assert run_local.start_prometheus(Supervisor(write=lambda _: None), cfg, env, {}) is None
