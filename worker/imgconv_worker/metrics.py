"""Worker Prometheus metrics, and the Celery signal handlers that make them right with prefork.

With PROMETHEUS_MULTIPROC_DIR set (it must be, for prefork children to be counted at all), every
pool process writes its values to files there and the main process serves them all, merged, on
IMGCONV_WORKER_METRICS_PORT (0 disables). The handlers below run however the worker is launched
(`celery -A imgconv_worker.celery_app:app worker` or `imgconv worker`), because Celery sends the
signals: the main process empties the directory before its pool forks; a child that exits drops
its live gauges (`mark_process_dead`), and a scrape drops those of children that died without
exiting cleanly (SIGKILL, hard time limit).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.registry import Collector

from imgconv_core.conversion import ConversionReport
from imgconv_core.telemetry import metrics as shared
from imgconv_core.telemetry.metrics import BuildInfo

log = logging.getLogger(__name__)

PORT_ENV = "IMGCONV_WORKER_METRICS_PORT"
UNKNOWN = "unknown"  # a format label of a task run that did not learn its job's formats

CONVERSIONS = Counter(
    "imgconv_worker_conversions_total",
    "Conversion task runs by outcome and formats",
    ["outcome", "source_format", "target_format"],
)
CONVERSION_SECONDS = Histogram(
    "imgconv_worker_conversion_seconds",
    "Wall time of a conversion task run",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


class ProcessGauges:
    """Pool processes alive and busy; `livesum`: the sum over processes still alive.

    Made on first use, not at import: an unlabelled metric opens its multiprocess file when it
    is created, and the main process must not hold a file it is about to delete at start.
    """

    def __init__(self) -> None:
        self.processes = Gauge(
            "imgconv_worker_processes",
            "Worker processes that run conversions (idle = processes - busy)",
            multiprocess_mode="livesum",
        )
        self.busy = Gauge(
            "imgconv_worker_busy_processes",
            "Worker processes running a conversion right now",
            multiprocess_mode="livesum",
        )


@lru_cache(maxsize=1)
def process_gauges() -> ProcessGauges:
    """This process's gauges (created once)."""
    return ProcessGauges()


@contextmanager
def track_conversion() -> Iterator[Callable[[ConversionReport], None]]:
    """Time a task run and mark the process busy; the caller reports the outcome through the
    yielded callback."""
    busy = process_gauges().busy
    busy.inc()
    start = time.perf_counter()
    seen: list[ConversionReport] = []
    try:
        yield seen.append
    finally:
        busy.dec()
        outcome = seen[0].outcome.value if seen else "error"
        CONVERSION_SECONDS.labels(outcome).observe(time.perf_counter() - start)
        if seen:
            # A run that never read its job (a duplicate dropped, a job gone) has no formats.
            report = seen[0]
            CONVERSIONS.labels(
                outcome, report.source_format or UNKNOWN, report.target_format or UNKNOWN
            ).inc()


WORKER_BUILD = BuildInfo("worker")


class WorkerScrape(Collector):
    """What the worker's endpoint serves: every pool process's metrics, and the build info."""

    def collect(self) -> Iterator[Any]:
        """Merge the multiprocess files (after dropping dead processes' live gauges)."""
        path = shared.multiprocess_dir()
        if path is None:
            yield from REGISTRY.collect()
        else:
            shared.forget_dead_processes(path)
            merged = multiprocess.MultiProcessCollector(None, str(path))  # type: ignore[no-untyped-call]
            yield from merged.collect()  # type: ignore[no-untyped-call]
        yield from WORKER_BUILD.collect()


def scrape_registry() -> CollectorRegistry:
    """A registry with exactly what the worker's /metrics shows."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerScrape())
    return registry


@worker_init.connect  # type: ignore[untyped-decorator]
def start_metrics(sender: Any = None, **_: Any) -> None:
    """In the main process, before the pool forks: empty the multiprocess directory, then serve
    the metrics of all pool processes."""
    path = shared.prepare_multiprocess_dir()
    port = int(os.environ.get(PORT_ENV, "0") or 0)
    if not port:
        return
    pool = str(getattr(sender, "pool_cls", "") or "")
    concurrency = int(getattr(sender, "concurrency", 1) or 1)
    if path is None and concurrency > 1 and "solo" not in pool and "thread" not in pool:
        log.warning(
            "%s is set but PROMETHEUS_MULTIPROC_DIR is not: the prefork children's metrics "
            "are invisible; set PROMETHEUS_MULTIPROC_DIR to a writable directory",
            PORT_ENV,
        )
    start_http_server(port, registry=scrape_registry())


@worker_process_init.connect  # type: ignore[untyped-decorator]
def count_pool_process(**_: Any) -> None:
    """A prefork child starts: one more process that converts."""
    process_gauges().processes.set(1)


@worker_ready.connect  # type: ignore[untyped-decorator]
def count_main_process(sender: Any = None, **_: Any) -> None:
    """With the solo or threads pool the main process converts: count it (its threads)."""
    pool = getattr(sender, "pool", None)
    if pool is not None and type(pool).__module__.rsplit(".", 1)[-1] in ("solo", "thread"):
        process_gauges().processes.set(getattr(pool, "limit", 1) or 1)


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def forget_pool_process(pid: int | None = None, **_: Any) -> None:
    """A prefork child exits: its live gauges (processes, busy) must stop counting."""
    shared.mark_process_dead(pid or os.getpid())
