"""PromQL that dashboards and alert rules share (one definition each).

`WINDOW` is Grafana's `$__rate_interval` in dashboards; alert rules use fixed windows.
"""

from __future__ import annotations

RATE_INTERVAL = "$__rate_interval"


def quantile(q: float, histogram: str, window: str, by: str = "") -> str:
    """The q-quantile of a histogram over `window`, aggregated `by` these labels."""
    labels = ", ".join(["le", *[b.strip() for b in by.split(",") if b.strip()]])
    return f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket[{window}])))"


def active_jobs() -> str:
    """Jobs queued or processing (every API replica reports the same count: max, not sum)."""
    return "max(sum without (status) (imgconv_backlog_jobs))"


def polls_per_active_job(window: str) -> str:
    """Polls per second for each job not yet finished (a poll storm makes it jump)."""
    return f"sum(rate(imgconv_api_polls_total[{window}])) / clamp_min({active_jobs()}, 1)"


def failure_ratio(window: str, by: str = "") -> str:
    """Failed jobs over all jobs that ended, optionally split by error code."""
    ended = f"sum(rate(imgconv_job_end_to_end_seconds_count[{window}]))"
    if by:
        return (
            f"sum by ({by}) (rate(imgconv_job_failures_total[{window}]))"
            f" / ignoring({by}) group_left {ended}"
        )
    return f"sum(rate(imgconv_job_failures_total[{window}])) / {ended}"


def ended_jobs(window: str) -> str:
    """Jobs that reached a terminal state per second."""
    return f"sum(rate(imgconv_job_end_to_end_seconds_count[{window}]))"


BACKLOG_MESSAGES = 'max(imgconv_backlog_messages{state="ready"})'
CONSUMERS = "max(imgconv_backlog_consumers)"
