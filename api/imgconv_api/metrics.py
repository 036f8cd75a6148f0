"""API Prometheus metrics and the ASGI middleware that times requests by route template."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgconv_core.errors import ImgconvError

REQUESTS = Counter(
    "imgconv_api_requests_total", "HTTP requests by route and status", ["method", "route", "status"]
)
LATENCY = Histogram(
    "imgconv_api_request_duration_seconds",
    "HTTP request latency by route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOBS_CREATED = Counter("imgconv_api_jobs_created_total", "Jobs accepted")
UPLOAD_REJECTIONS = Counter(
    "imgconv_api_upload_rejections_total", "Uploads rejected, by error code", ["code"]
)
PUBLISH_FAILURES = Counter(
    "imgconv_api_publish_failures_total",
    "Accepted jobs whose message could not be published at once (left to the sweeper)",
)

UPLOAD_BYTES_HELD = Gauge(
    "imgconv_api_upload_bytes_held",
    "Upload bytes this process holds, in memory and temporary files (IMGCONV_UPLOAD_BUDGET_BYTES)",
)
UPLOAD_BYTES_IN_MEMORY = Gauge(
    "imgconv_api_upload_bytes_in_memory",
    "Of those, the bytes held in memory (IMGCONV_UPLOAD_MEMORY_BYTES)",
)


def count_rejection(exc: Exception) -> None:
    """Count an upload rejected with a domain error."""
    if isinstance(exc, ImgconvError):
        UPLOAD_REJECTIONS.labels(exc.code).inc()


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead on the poll hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope)
            method = scope["method"]
            LATENCY.labels(method, route).observe(time.perf_counter() - start)
            REQUESTS.labels(method, route, str(status)).inc()


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", []):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return str(getattr(candidate, "path", "other"))
    return "other"
