"""Every component's metrics: Prometheus naming (promtool), base units, and labels that stay
bounded (no per-job, per-client or per-pod label: those belong in traces and logs)."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import imgconv_api.metrics as api_metrics
import imgconv_worker.metrics as worker_metrics
from imgconv_core.status_cache import CachedJob
from imgconv_core.telemetry.metrics import BuildInfo, exposition
from imgconv_operator import metrics as operator_metrics
from tests.support.observability import promtool_lint

# Every label any component uses; a new one must be added here on purpose.
_BUILD = {"component", "version", "revision", "python_version"}
BOUNDED_LABELS = {
    "api+worker": {"method", "route", "status", "outcome", "source", "source_format",
                   "target_format", "code", "state", "le"} | _BUILD,
    "operator": {"namespace", "autoscaler", "state", "direction", "reason", "le"} | _BUILD,
}  # fmt: skip
PREFIXES = {
    "api+worker": (
        "imgconv_api_",
        "imgconv_worker_",
        "imgconv_job_",
        "imgconv_backlog_",
        "imgconv_build_info",
    ),
    "operator": ("imgconv_autoscaler_", "imgconv_build_info"),
}


def _imgconv_families(text: str) -> dict[str, set[str]]:
    """Label names of each imgconv family in an exposition."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("imgconv_"):
            labels = found.setdefault(family.name, set())
            for sample in family.samples:
                labels |= set(sample.labels)
    return found


def _check(component: str, text: str) -> None:
    families = _imgconv_families(text)
    assert families, f"{component} exposes no imgconv metric"
    for name, labels in families.items():
        assert name.startswith(PREFIXES[component]), (component, name)
        assert labels <= BOUNDED_LABELS[component], (component, name, labels)
    assert promtool_lint(text) == ""


def test_api_and_worker_metrics() -> None:
    """Both live in the default registry of their process (here: of this one)."""
    api_metrics.REQUEST_SECONDS.labels("GET", "/api/v1/jobs/{job_id}", "200").observe(0.01)
    polls = api_metrics.PollMetrics(None)
    for outcome in api_metrics.POLL_OUTCOMES:
        polls.answered(outcome)
    polls.read(from_cache=True)
    queued = CachedJob("owner", 1, False, b"{}")
    with polls.long_poll() as waited:
        waited(queued, queued)  # timed out: the same version
    api_metrics.UPLOAD_REJECTIONS.labels("invalid_files").inc()
    api_metrics.PUBLISH_FAILURES.inc(0)

    class Job:
        source_format, target_format, source_bytes = "png", "webp", 10

    api_metrics.count_accepted([Job()])
    worker_metrics.CONVERSIONS.labels("completed", "png", "webp").inc()
    worker_metrics.CONVERSION_SECONDS.labels("completed").observe(0.1)
    worker_metrics.process_gauges().busy.set(0)
    _check("api+worker", exposition([BuildInfo("api")]).decode())
    text = generate_latest(worker_metrics.scrape_registry()).decode()
    assert 'imgconv_build_info{component="worker"' in text
    assert "imgconv_worker_busy_processes 0.0" in text


def test_operator_metrics() -> None:
    ns, name = "lint", "names"
    operator_metrics.QUEUE_MESSAGES.labels(ns, name, "ready").set(3)
    operator_metrics.DESIRED_REPLICAS.labels(ns, name).set(2)
    operator_metrics.CURRENT_REPLICAS.labels(ns, name).set(1)
    operator_metrics.DECISIONS.labels(ns, name, "up", "Backlog").inc()
    operator_metrics.SOURCE_ERRORS.labels(ns, name).inc()
    operator_metrics.RECONCILE_SECONDS.labels(ns, name).observe(0.02)
    try:
        text = generate_latest(operator_metrics.REGISTRY).decode()
    finally:
        operator_metrics.forget(ns, name)
    _check("operator", text)
    assert 'imgconv_build_info{component="operator"' in text


def test_the_default_registry_has_no_created_series() -> None:
    assert "_created" not in generate_latest(REGISTRY).decode()
