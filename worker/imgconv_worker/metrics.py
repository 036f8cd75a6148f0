"""Worker Prometheus metrics. Prefork children write to PROMETHEUS_MULTIPROC_DIR when it is set;
the main process serves them on IMGCONV_WORKER_METRICS_PORT (0 disables)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery.signals import worker_init
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

from imgconv_core.conversion import ConversionReport

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


@contextmanager
def track_conversion() -> Iterator[Callable[[ConversionReport], None]]:
    """Time a task run; the caller reports the outcome through the yielded callback."""
    start = time.perf_counter()
    seen: list[ConversionReport] = []
    yield seen.append
    outcome = seen[0].outcome.value if seen else "error"
    CONVERSION_SECONDS.labels(outcome).observe(time.perf_counter() - start)
    if seen:
        CONVERSIONS.labels(outcome, seen[0].source_format or "", seen[0].target_format or "").inc()


@worker_init.connect  # type: ignore[untyped-decorator]
def serve_metrics(**_: Any) -> None:
    """Expose the metrics of all prefork children from the main worker process."""
    port = int(os.environ.get("IMGCONV_WORKER_METRICS_PORT", "0"))
    if not port:
        return
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, registry=registry)
    else:
        start_http_server(port)
