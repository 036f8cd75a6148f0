"""Observability test helpers: scraping /metrics, promtool, a real Prometheus server, and a tiny
OTLP/HTTP trace collector that the real exporters of the API and worker send to."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import Process, free_port, spawn, wait_until


def tool(name: str) -> str:
    """The path of a Prometheus tool; fails under CI=true when missing, skips elsewhere."""
    import pytest

    found = shutil.which(name)
    if found is None:
        message = f"{name} is missing: apt-get install --no-install-recommends prometheus"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)  # outside CI only: with CI=true it failed above
    return found


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of an exposition, by sample name (e.g. `x_total`, `h_count`)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return found


def total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    return sum(
        value
        for sample_labels, value in samples(text).get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def promtool_lint(text: str) -> str:
    """`promtool check metrics` on an exposition: its complaints (empty when clean)."""
    result = subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    return (result.stdout + result.stderr).decode().strip()


@dataclass
class Prometheus:
    """A real Prometheus server (Debian's 2.42) on loopback, in a temporary directory."""

    url: str
    process: Process

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; raises on a query that does not parse."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query failed: {expr}\n{body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def query_range(
        self, expr: str, start: float, end: float, step: float = 1.0
    ) -> list[dict[str, Any]]:
        """A range query's result matrix (each series' `values`: [time, "value"] pairs)."""
        response = httpx.get(
            f"{self.url}/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": step},
            timeout=30,
        )
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query failed: {expr}\n{body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of an instant query (None when it returned nothing)."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def targets_up(self) -> dict[str, bool]:
        """Each scrape job's health (all its targets up)."""
        body = httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()
        health: dict[str, bool] = {}
        for target in body["data"]["activeTargets"]:
            job = target["labels"]["job"]
            health[job] = health.get(job, True) and target["health"] == "up"
        return health

    def rule_groups(self) -> list[dict[str, Any]]:
        """The loaded rule groups."""
        groups: list[dict[str, Any]] = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()[
            "data"
        ]["groups"]
        return groups


def prometheus_config(
    targets: dict[str, str], rule_files: list[Path], scrape_interval: str = "1s"
) -> dict[str, Any]:
    """A Prometheus configuration scraping each `job: host:port/path` target."""
    jobs = []
    for job, address in targets.items():
        parsed = urllib.parse.urlsplit(f"http://{address}")
        jobs.append(
            {
                "job_name": job,
                "metrics_path": parsed.path or "/metrics",
                "static_configs": [{"targets": [parsed.netloc]}],
            }
        )
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": jobs,
    }


@contextlib.contextmanager
def running_prometheus(
    workdir: Path,
    targets: dict[str, str],
    rule_files: list[Path] = (),  # type: ignore[assignment]
) -> Iterator[Prometheus]:
    """Start Prometheus scraping `targets` every second; stop it afterwards."""
    binary = tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(targets, list(rule_files))))
    port = free_port()
    process = spawn(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
        dict(os.environ),
        workdir,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 30, "Prometheus did not start", process)
        yield Prometheus(url, process)
    finally:
        process.stop()


# --------------------------------------------------------------------------------------------
# Traces


@dataclass(frozen=True)
class Span:
    """One received span, flattened."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]


@dataclass
class TraceCollector:
    """An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) keeping every span it is sent."""

    url: str
    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Span]:
        """A copy of what arrived so far."""
        with self.lock:
            return list(self.spans)

    def add(self, body: bytes) -> None:
        """Decode one export request."""
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        Span(
                            service=str(resource.get("service.name", "")),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self.lock:
            self.spans.extend(found)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@contextlib.contextmanager
def trace_collector() -> Iterator[TraceCollector]:
    """Run a TraceCollector on a free loopback port."""
    port = free_port()
    collector = TraceCollector(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path == "/v1/traces":
                collector.add(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()
            else:
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()


def wait_for(condition: Any, timeout: float, message: str) -> None:
    """Poll `condition()` until true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(message)


def dump(value: Any) -> str:
    """Readable JSON for assertion messages."""
    return json.dumps(value, indent=1, default=str)[:4000]
