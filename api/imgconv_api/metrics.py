"""API Prometheus metrics: HTTP requests by route template, polls (counted in the fast path),
uploads, result discovery and the backlog, and the ASGI middleware that times requests.

Gauges declare their multiprocess mode, so the numbers stay right when the API runs several
processes with PROMETHEUS_MULTIPROC_DIR (see `imgconv_core.telemetry.metrics`).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Protocol

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgconv_api.paths import API_PREFIX
from imgconv_core.db.models import Job
from imgconv_core.jobs import CONVERSIONS_QUEUE, JobStatus
from imgconv_core.status_cache import CachedJob
from imgconv_core.telemetry.metrics import observe_discovered

log = logging.getLogger(__name__)

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUEST_SECONDS = Histogram(
    "imgconv_api_request_duration_seconds",
    "HTTP request duration by route template, method and status",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
)

# Polls: every answer of GET /api/v1/jobs/{id}, by what the client learnt. No `rate_limited`:
# polls are not rate limited (the fast path answers them from Redis; a limiter would add its own
# Redis round trip to each); a poll storm shows in the ImgconvPollStorm alert instead.
POLL_OUTCOMES = (
    "changed",
    "not_modified",
    "timeout",
    "not_found",
    "unauthorized",
    "error",
)
_POLL_ERRORS = {"job_not_found": "not_found", "unauthorized": "unauthorized"}
POLLS = Counter("imgconv_api_polls_total", "Job polls answered, by outcome", ["outcome"])
POLL_READS = Counter(
    "imgconv_api_poll_reads_total",
    "Job status reads of polls, by where the status came from (cache or database)",
    ["source"],
)
LONG_POLLS = Gauge(
    "imgconv_api_long_polls_in_progress",
    "Long polls waiting for a change right now",
    multiprocess_mode="livesum",
)
LONG_POLL_WAIT = Histogram(
    "imgconv_api_long_poll_wait_seconds",
    "How long long polls waited, by how they ended (changed, timeout, not_found, aborted)",
    ["outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30),
)

# Uploads
JOBS_ACCEPTED = Counter(
    "imgconv_api_jobs_accepted_total",
    "Jobs accepted, by source and target format",
    ["source_format", "target_format"],
)
UPLOAD_BYTES = Counter(
    "imgconv_api_upload_bytes_total", "Bytes of the images of accepted jobs", ["source_format"]
)
UPLOAD_REJECTIONS = Counter(
    "imgconv_api_upload_rejections_total", "Upload requests rejected, by error code", ["code"]
)
PUBLISH_FAILURES = Counter(
    "imgconv_api_publish_failures_total",
    "Accepted jobs whose message could not be published at once (left to the sweeper)",
)

UPLOAD_BYTES_HELD = Gauge(
    "imgconv_api_upload_bytes_held",
    "Upload bytes this process holds, in memory and temporary files (IMGCONV_UPLOAD_BUDGET_BYTES)",
    multiprocess_mode="livesum",
)
UPLOAD_BYTES_IN_MEMORY = Gauge(
    "imgconv_api_upload_bytes_in_memory",
    "Of those, the bytes held in memory (IMGCONV_UPLOAD_MEMORY_BYTES)",
    multiprocess_mode="livesum",
)

UPLOAD_ROUTE = f"{API_PREFIX}/jobs"


class AcceptedJob(Protocol):
    """What the upload counters read from a stored job."""

    source_format: str
    target_format: str
    source_bytes: int


def poll_error_outcome(code: str) -> str:
    """The poll outcome of an error code."""
    return _POLL_ERRORS.get(code, "error")


def count_accepted(jobs: Sequence[AcceptedJob]) -> None:
    """Count the jobs of an accepted upload."""
    for job in jobs:
        JOBS_ACCEPTED.labels(job.source_format, job.target_format).inc()
        UPLOAD_BYTES.labels(job.source_format).inc(job.source_bytes)


def count_error(request: Request, code: str) -> None:
    """Count an error answer; an upload's counts as a rejection by its code."""
    if request.method == "POST" and request.url.path == UPLOAD_ROUTE:
        UPLOAD_REJECTIONS.labels(code).inc()


class PollMetrics:
    """The poll fast path's counters, bound to their labels once (a poll then costs a few
    increments); with `enabled=False` every method does nothing (the benchmark's reference)."""

    def __init__(
        self,
        redis: aioredis.Redis | None,
        *,
        enabled: bool = True,
        remember_seconds: int = 24 * 3600,
    ) -> None:
        self.enabled = enabled
        self.outcomes = {outcome: POLLS.labels(outcome) for outcome in POLL_OUTCOMES}
        self.from_cache = POLL_READS.labels("cache")
        self.from_database = POLL_READS.labels("database")
        self.discovery = (
            ResultDiscovery(redis, remember_seconds) if enabled and redis is not None else None
        )

    def answered(self, outcome: str) -> None:
        """Count one poll answer."""
        if self.enabled:
            counter = self.outcomes.get(outcome)
            if counter is not None:
                counter.inc()

    def read(self, from_cache: bool) -> None:
        """Count one status read."""
        if self.enabled:
            (self.from_cache if from_cache else self.from_database).inc()

    @contextmanager
    def long_poll(self) -> Iterator[Callable[[CachedJob | None, CachedJob], CachedJob | None]]:
        """Count a long poll as waiting while the block runs; the block passes what the wait
        returned (and the state it started from) through the yielded function, which tells
        how it ended: changed, timeout or not_found (aborted if the block never does)."""
        if not self.enabled:
            yield lambda entry, _: entry
            return
        ended = ["aborted"]  # the client went away, or an error

        def outcome(entry: CachedJob | None, baseline: CachedJob) -> CachedJob | None:
            if entry is None:
                ended[0] = "not_found"
            else:
                ended[0] = "timeout" if entry.etag == baseline.etag else "changed"
            return entry

        LONG_POLLS.inc()
        started = time.perf_counter()
        try:
            yield outcome
        finally:
            LONG_POLLS.dec()
            LONG_POLL_WAIT.labels(ended[0]).observe(time.perf_counter() - started)

    async def answered_terminal(self, job_id: uuid.UUID, entry: CachedJob) -> None:
        """A poll answers a terminal job with its body: maybe the first that saw it."""
        if self.discovery is not None:
            await self.discovery.seen(job_id, entry)


class ResultDiscovery:
    """Observes, once per job across all API processes, the time from a job's terminal state to
    the first poll that answered it.

    A process remembers the jobs it has already handled (bounded), so repeated polls of a
    finished job cost a dict lookup; the first time, a Redis SET NX decides which process
    observes (each process asks once per job). The Redis marks live as long as cached statuses
    (`remember_seconds`): one small key per job finished that long ago at most.
    """

    MEMORY = 16384

    def __init__(self, redis: aioredis.Redis, remember_seconds: int) -> None:
        self.redis = redis
        self.remember_seconds = remember_seconds
        self.handled: OrderedDict[uuid.UUID, None] = OrderedDict()

    async def seen(self, job_id: uuid.UUID, entry: CachedJob) -> None:
        """Observe the discovery if this is the first poll anywhere to answer the terminal job."""
        if job_id in self.handled:
            return
        self.handled[job_id] = None
        if len(self.handled) > self.MEMORY:
            self.handled.popitem(last=False)
        now = datetime.now(UTC)
        try:
            first = await self.redis.set(
                f"imgconv:discovered:{job_id}", b"1", nx=True, ex=self.remember_seconds
            )
        except (RedisError, OSError):
            return
        if not first:
            return
        job = json.loads(entry.body)
        if job.get("finished_at"):
            observe_discovered(
                job["target_format"], job["status"], datetime.fromisoformat(job["finished_at"]), now
            )


class MetricsMiddleware:
    """Times every request by route template (pure ASGI: no BaseHTTPMiddleware overhead)."""

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
            REQUEST_SECONDS.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - start
            )


def route_template(scope: Scope) -> str:
    """The route's path template (`/api/v1/jobs/{job_id}`), never the raw path (no per-job
    series); `other` for paths no route matches."""
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


# --------------------------------------------------------------------------------------------
# Backlog, read when scraped


class QueueReader(Protocol):
    """The broker side of the backlog (the API's publisher)."""

    def queue_depth(self) -> tuple[int, int]: ...


BACKLOG_TTL_SECONDS = 2.0
LIVE_STATUSES = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)


class Backlog(Collector):
    """Jobs queued/processing (an index-only count of live jobs: cheap at any table size), the
    broker's ready messages and consumers, and with a management URL its unacked messages.

    Read at most every BACKLOG_TTL_SECONDS, so several scrapers cost no more. Every API replica
    reports the same numbers: aggregate them with max(), not sum().
    """

    def __init__(
        self,
        reads: sessionmaker[Session],
        queue: QueueReader,
        management_url: str | None = None,
        broker_url: str = "",
    ) -> None:
        self.reads = reads
        self.queue = queue
        self.management_url = management_url
        self.broker_url = broker_url
        self._lock = threading.Lock()
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The backlog families (a source that is down is left out, not reported as 0)."""
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > BACKLOG_TTL_SECONDS:
                self._cached = (time.monotonic(), self._read())
            yield from self._cached[1]

    def _read(self) -> list[GaugeMetricFamily]:
        families: list[GaugeMetricFamily] = []
        jobs = GaugeMetricFamily(
            "imgconv_backlog_jobs", "Jobs not yet finished, by status", labels=["status"]
        )
        try:
            with self.reads() as tx:
                rows = tx.execute(
                    select(Job.status, func.count())
                    .where(Job.status.in_(LIVE_STATUSES))
                    .group_by(Job.status)
                ).all()
            counts = {status: 0 for status in LIVE_STATUSES} | {s: int(n) for s, n in rows}
            for status, count in counts.items():
                jobs.add_metric([status], count)
            families.append(jobs)
        except Exception as exc:
            log.debug("backlog: jobs unavailable: %s", exc)
        messages = GaugeMetricFamily(
            "imgconv_backlog_messages",
            "Messages in the conversions queue, by state (ready, unacked)",
            labels=["state"],
        )
        try:
            ready, consumers = self.queue.queue_depth()
            messages.add_metric(["ready"], ready)
            families.append(
                GaugeMetricFamily(
                    "imgconv_backlog_consumers",
                    "Consumers (worker processes' connections) of the conversions queue",
                    value=consumers,
                )
            )
        except Exception as exc:
            log.debug("backlog: broker unavailable: %s", exc)
        unacked = self._unacked()
        if unacked is not None:
            messages.add_metric(["unacked"], unacked)
        if messages.samples:
            families.append(messages)
        return families

    def _unacked(self) -> int | None:
        """Unacked messages from the RabbitMQ management API (AMQP does not tell them)."""
        if not self.management_url:
            return None
        broker = urllib.parse.urlsplit(self.broker_url)
        vhost = urllib.parse.unquote(broker.path[1:]) if broker.path not in ("", "/") else "/"
        url = (
            f"{self.management_url.rstrip('/')}/api/queues/"
            f"{urllib.parse.quote(vhost, safe='')}/{CONVERSIONS_QUEUE}"
        )
        auth = f"{broker.username or 'guest'}:{urllib.parse.unquote(broker.password or 'guest')}"
        basic = "Basic " + base64.b64encode(auth.encode()).decode()
        # The operator's configured management URL (http/https), not user input.
        request = urllib.request.Request(url, headers={"Authorization": basic})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
                return int(json.load(response).get("messages_unacknowledged", 0))
        except Exception as exc:
            log.debug("backlog: management API unavailable: %s", exc)
            return None
