"""The Grafana dashboards, written with Grafana's foundation SDK; `python -m observability`
writes them to `observability/dashboards/<uid>.json` (committed, checked by a test).

Every query uses the `datasource` variable, so the dashboards work with any Prometheus data
source (kube-prometheus-stack's Grafana sidecar picks them up from ConfigMaps as they are).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from observability import promql
from observability.promql import RATE_INTERVAL as W
from observability.promql import quantile

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


@dataclass(frozen=True)
class Query:
    """One panel query and its legend."""

    expr: str
    legend: str = ""


def _target(ref: str, query: Query) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(query.expr).ref_id(ref).datasource(DATASOURCE)
    return target.legend_format(query.legend) if query.legend else target


def graph(title: str, unit: str, *queries: Query, width: int = 12) -> timeseries.Panel:
    """A time series panel."""
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).span(width).height(8)
    for index, query in enumerate(queries):
        panel = panel.with_target(_target(chr(ord("A") + index), query))
    return panel


def number(title: str, unit: str, query: Query, width: int = 6) -> stat.Panel:
    """A single-number panel."""
    return (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(width)
        .height(4)
        .with_target(_target("A", query))
    )


def _base(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["imgconv"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .editable()
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    )


def _phases(q: float) -> list[Query]:
    return [
        Query(
            quantile(q, f"imgconv_job_{phase}_seconds", W),
            f"{phase.replace('_', ' ')} p{int(q * 100)}",
        )
        for phase in ("queue_wait", "processing", "end_to_end")
    ]


def overview() -> db.Dashboard:
    """Polls, latency by phase, backlog, throughput and failures, workers."""
    return (
        _base(
            "imgconv-overview",
            "imgconv overview",
            "Polls, conversion latency by phase, backlog, throughput and failures, workers.",
        )
        .with_row(db.Row("Polls"))
        .with_panel(
            graph(
                "Poll rate by outcome",
                "reqps",
                Query(f"sum by (outcome) (rate(imgconv_api_polls_total[{W}]))", "{{outcome}}"),
            )
        )
        .with_panel(
            graph(
                "Polls per active job",
                "reqps",
                Query(promql.polls_per_active_job(W), "polls/s per queued or processing job"),
            )
        )
        .with_panel(
            graph(
                "Poll status reads by source",
                "reqps",
                Query(f"sum by (source) (rate(imgconv_api_poll_reads_total[{W}]))", "{{source}}"),
            )
        )
        .with_panel(
            graph(
                "Long polls",
                "short",
                Query("sum(imgconv_api_long_polls_in_progress)", "waiting now"),
                Query(
                    f"sum by (outcome) (rate(imgconv_api_long_poll_wait_seconds_count[{W}]))",
                    "ended/s: {{outcome}}",
                ),
            )
        )
        .with_row(db.Row("Latency"))
        .with_panel(graph("Latency by phase, p50", "s", *_phases(0.5)))
        .with_panel(graph("Latency by phase, p95", "s", *_phases(0.95)))
        .with_panel(
            graph(
                "Result discovery (terminal to first poll that saw it)",
                "s",
                *[
                    Query(
                        quantile(q, "imgconv_job_result_discovery_seconds", W), f"p{int(q * 100)}"
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
            )
        )
        .with_panel(
            graph(
                "HTTP p95 by route",
                "s",
                Query(
                    quantile(0.95, "imgconv_api_request_duration_seconds", W, by="method, route"),
                    "{{method}} {{route}}",
                ),
            )
        )
        .with_row(db.Row("Backlog"))
        .with_panel(
            graph(
                "Backlog",
                "short",
                Query("max by (status) (imgconv_backlog_jobs)", "jobs {{status}}"),
                Query("max by (state) (imgconv_backlog_messages)", "messages {{state}}"),
            )
        )
        .with_panel(
            graph(
                "Queue wait p95 by target format",
                "s",
                Query(
                    quantile(0.95, "imgconv_job_queue_wait_seconds", W, by="target_format"),
                    "{{target_format}}",
                ),
            )
        )
        .with_row(db.Row("Throughput and failures"))
        .with_panel(
            graph(
                "Jobs ended by target format and outcome",
                "ops",
                Query(
                    "sum by (target_format, outcome) "
                    f"(rate(imgconv_job_end_to_end_seconds_count[{W}]))",
                    "{{target_format}} {{outcome}}",
                ),
                Query(
                    "sum by (source_format, target_format) "
                    f"(rate(imgconv_api_jobs_accepted_total[{W}]))",
                    "accepted {{source_format}} -> {{target_format}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Failure ratio by code",
                "percentunit",
                Query(promql.failure_ratio(W, by="code"), "{{code}}"),
            )
        )
        .with_panel(
            graph(
                "Upload rejections by code",
                "reqps",
                Query(
                    f"sum by (code) (rate(imgconv_api_upload_rejections_total[{W}]))", "{{code}}"
                ),
            )
        )
        .with_panel(
            graph(
                "Upload bytes in",
                "Bps",
                Query(
                    f"sum by (source_format) (rate(imgconv_api_upload_bytes_total[{W}]))",
                    "{{source_format}}",
                ),
            )
        )
        .with_row(db.Row("Workers"))
        .with_panel(
            graph(
                "Worker processes",
                "short",
                Query("sum(imgconv_worker_busy_processes)", "busy"),
                Query("sum(imgconv_worker_processes) - sum(imgconv_worker_busy_processes)", "idle"),
                Query(promql.CONSUMERS, "queue consumers"),
            )
        )
        .with_panel(
            graph(
                "Replicas",
                "short",
                Query(
                    "sum by (autoscaler) (imgconv_autoscaler_current_replicas)",
                    "{{autoscaler}} current",
                ),
                Query(
                    "sum by (autoscaler) (imgconv_autoscaler_desired_replicas)",
                    "{{autoscaler}} desired",
                ),
                Query('count(imgconv_build_info{component="worker"})', "worker pods scraped"),
            )
        )
        .with_panel(
            number(
                "Components up",
                "short",
                Query("count by (component) (imgconv_build_info)", "{{component}}"),
                width=12,
            )
        )
    )


def autoscaling() -> db.Dashboard:
    """What the operator sees and does: backlog against replicas, decisions, busy pods."""
    return (
        _base(
            "imgconv-autoscaling",
            "imgconv autoscaling",
            "Backlog against replicas, scaling decisions by reason, busy pods, scale events.",
        )
        .with_panel(
            graph(
                "Backlog against replicas",
                "short",
                Query(
                    "sum by (autoscaler, state) (imgconv_autoscaler_queue_messages)",
                    "{{autoscaler}} messages {{state}}",
                ),
                Query(
                    "sum by (autoscaler) (imgconv_autoscaler_current_replicas)",
                    "{{autoscaler}} replicas",
                ),
                Query(
                    "sum by (autoscaler) (imgconv_autoscaler_desired_replicas)",
                    "{{autoscaler}} desired",
                ),
                width=24,
            )
        )
        .with_panel(
            graph(
                "Decisions by reason",
                "short",
                Query(
                    "sum by (direction, reason) "
                    f"(increase(imgconv_autoscaler_decisions_total[{W}]))",
                    "{{direction}} {{reason}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Busy worker pods",
                "short",
                Query(
                    "sum(clamp_max(sum by (instance) (imgconv_worker_busy_processes), 1))",
                    "pods running a conversion",
                ),
                Query("sum(imgconv_worker_busy_processes)", "busy processes"),
            )
        )
        .with_panel(
            graph(
                "Scale events",
                "short",
                Query(
                    "sum by (autoscaler, direction) "
                    f'(increase(imgconv_autoscaler_decisions_total{{direction=~"up|down"}}[{W}]))',
                    "{{autoscaler}} {{direction}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Reconcile duration p95",
                "s",
                Query(
                    quantile(
                        0.95, "imgconv_autoscaler_reconcile_duration_seconds", W, by="autoscaler"
                    ),
                    "{{autoscaler}}",
                ),
                Query(
                    f"sum by (autoscaler) (rate(imgconv_autoscaler_source_errors_total[{W}]))",
                    "{{autoscaler}} source errors/s",
                ),
            )
        )
    )


DASHBOARDS = {"imgconv-overview": overview, "imgconv-autoscaling": autoscaling}


def render(uid: str) -> str:
    """The JSON Grafana imports, as committed (panels numbered in order: ids must be unique)."""
    model = json.loads(json.dumps(DASHBOARDS[uid]().build(), cls=JSONEncoder))
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def queries(dashboard_json: str) -> list[tuple[str, str]]:
    """(panel title, expression) of every query of a rendered dashboard."""
    model = json.loads(dashboard_json)
    found = []
    for panel in model.get("panels", []):
        for target in panel.get("targets", []) or []:
            if target.get("expr"):
                found.append((panel["title"], target["expr"]))
    return found
