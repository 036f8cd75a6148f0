"""Prometheus metrics of the operator, on their own registry (no process-global surprises)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from imgconv_core.telemetry.metrics import BuildInfo

REGISTRY = CollectorRegistry(auto_describe=True)
REGISTRY.register(BuildInfo("operator"))
LABELS = ("namespace", "autoscaler")

QUEUE_MESSAGES = Gauge(
    "imgconv_autoscaler_queue_messages",
    "Messages in the watched queue by state (ready, unacked) as last read.",
    [*LABELS, "state"],
    registry=REGISTRY,
)
DESIRED_REPLICAS = Gauge(
    "imgconv_autoscaler_desired_replicas",
    "Replica count the autoscaler asked for.",
    LABELS,
    registry=REGISTRY,
)
CURRENT_REPLICAS = Gauge(
    "imgconv_autoscaler_current_replicas",
    "Replica count of the target Deployment when last read.",
    LABELS,
    registry=REGISTRY,
)
DECISIONS = Counter(
    "imgconv_autoscaler_decisions_total",
    "Scaling decisions by direction (up, down, none) and reason.",
    [*LABELS, "direction", "reason"],
    registry=REGISTRY,
)
SOURCE_ERRORS = Counter(
    "imgconv_autoscaler_source_errors_total",
    "Failed reads of the queue source.",
    LABELS,
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "imgconv_autoscaler_reconcile_duration_seconds",
    "Time one reconcile (read, decide, act, write status) took.",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)


def observe_reconcile(namespace: str, name: str, seconds: float) -> None:
    """Time one reconcile; the autoscaler's error counter exists from its first loop on, at 0
    (so a rate over it works from the first error, and a dashboard shows 0, not no data)."""
    RECONCILE_SECONDS.labels(namespace, name).observe(seconds)
    SOURCE_ERRORS.labels(namespace, name)


def forget(namespace: str, name: str) -> None:
    """Drop the series of a deleted autoscaler so dashboards do not show ghosts."""
    for metric in (QUEUE_MESSAGES, DESIRED_REPLICAS, CURRENT_REPLICAS, DECISIONS, SOURCE_ERRORS):
        for labels in list(metric._metrics):  # prometheus_client has no public label listing
            if labels[:2] == (namespace, name):
                metric.remove(*labels)
    with contextlib.suppress(KeyError):  # never reconciled
        RECONCILE_SECONDS.remove(namespace, name)


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104  # scraped from inside the pod network
    """Expose /metrics on a background thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
