"""Prometheus plumbing every component shares: build info, the multiprocess directory, the
exposition of one scrape, and the job-phase histograms (observed by whichever process moves a
job, so the API and the worker expose the same series).

Multiprocess: when PROMETHEUS_MULTIPROC_DIR is set before prometheus_client is imported, every
process writes its values to files there and a scrape merges them. The directory must be emptied
once when the component starts, before any metric is defined and any child forks
(`imgconv_core.telemetry.multiprocess_dir`), and live gauges of a process that
exited must be dropped (`mark_process_dead`); `exposition` also drops those of any process that
died without saying so (SIGKILL, OOM), so "live" gauges never count ghosts.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Protocol

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from imgconv_core.processes import pid_alive
from imgconv_core.telemetry.multiprocess_dir import (
    MULTIPROC_ENV,
    multiprocess_dir,
    prepare_multiprocess_dir,
)

__all__ = ["MULTIPROC_ENV", "multiprocess_dir", "prepare_multiprocess_dir"]

# `*_created` series double every counter and histogram for a value no panel or rule reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds from a fraction of a poll interval to the hard time limit and beyond.
JOB_PHASE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
DISCOVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
PHASE_LABELS = ("target_format", "outcome")

QUEUE_WAIT = Histogram(
    "imgconv_job_queue_wait_seconds",
    "From a job's acceptance to the claim of the worker that ended it",
    PHASE_LABELS,
    buckets=JOB_PHASE_BUCKETS,
)
PROCESSING = Histogram(
    "imgconv_job_processing_seconds",
    "From a job's claim to its end, for jobs a worker finished",
    PHASE_LABELS,
    buckets=JOB_PHASE_BUCKETS,
)
END_TO_END = Histogram(
    "imgconv_job_end_to_end_seconds",
    "From a job's acceptance to its terminal state (one observation per job)",
    PHASE_LABELS,
    buckets=JOB_PHASE_BUCKETS,
)
FAILURES = Counter(
    "imgconv_job_failures_total",
    "Jobs that ended failed, by error code",
    ("target_format", "code"),
)
RESULT_DISCOVERY = Histogram(
    "imgconv_job_result_discovery_seconds",
    "From a job's terminal state to the first poll that answered it",
    PHASE_LABELS,
    buckets=DISCOVERY_BUCKETS,
)


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of a process that exited (its counters stay, as they must)."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


_PID_OF_FILE = re.compile(r"_(\d+)\.db$")


def forget_dead_processes(path: Path) -> None:
    """`mark_process_dead` for every process that left live gauge files and is gone."""
    pids = {
        int(m.group(1)) for f in path.glob("gauge_live*.db") if (m := _PID_OF_FILE.search(f.name))
    }
    for pid in pids:
        if not pid_alive(pid):
            multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def component_version() -> str:
    """The installed imgconv version."""
    try:
        return version("imgconv")
    except PackageNotFoundError:
        return "unknown"


class BuildInfo(Collector):
    """`imgconv_build_info{component, version, revision, python_version} 1`, made at each scrape
    (so it works the same with or without the multiprocess directory)."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.labels = {
            "component": component,
            "version": component_version(),
            "revision": os.environ.get("IMGCONV_BUILD_REVISION", "unknown"),
            "python_version": platform.python_version(),
        }

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The one build-info sample."""
        family = GaugeMetricFamily(
            "imgconv_build_info",
            "Build of this imgconv component (always 1)",
            labels=list(self.labels),
        )
        family.add_metric(list(self.labels.values()), 1)
        yield family


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """One scrape of this process: the merged multiprocess files (or this process's default
    registry) plus `extra` collectors, in the text format."""
    path = multiprocess_dir()
    registry = CollectorRegistry(auto_describe=False)
    for collector in extra:
        registry.register(collector)
    if path is None:
        return generate_latest(REGISTRY) + generate_latest(registry)
    forget_dead_processes(path)
    multiprocess.MultiProcessCollector(registry, str(path))  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


class FinishedJob(Protocol):
    """What the phase histograms read from a job that reached a terminal state."""

    target_format: str
    status: str
    error_code: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def observe_terminal(job: FinishedJob, *, by_worker: bool) -> None:
    """Observe a job that just reached its terminal state (call once, after the commit).

    Every terminal job adds one end-to-end observation. A job a worker ended adds its queue
    wait (acceptance to the claim that ended it, retries included) and its processing (that
    claim to the end), so the two add up to its end to end.
    """
    end_to_end = _seconds(job.created_at, job.finished_at)
    if end_to_end is None:
        return
    labels = (job.target_format, job.status)
    END_TO_END.labels(*labels).observe(end_to_end)
    if job.error_code is not None:
        FAILURES.labels(job.target_format, job.error_code).inc()
    if by_worker and job.started_at is not None:
        QUEUE_WAIT.labels(*labels).observe(_seconds(job.created_at, job.started_at) or 0.0)
        PROCESSING.labels(*labels).observe(_seconds(job.started_at, job.finished_at) or 0.0)


def observe_discovered(
    target_format: str, outcome: str, finished_at: datetime, now: datetime
) -> None:
    """Result discovery: terminal state to the first poll that saw it."""
    seconds = _seconds(finished_at, now)
    if seconds is not None:
        RESULT_DISCOVERY.labels(target_format, outcome).observe(seconds)
