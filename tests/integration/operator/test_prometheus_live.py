"""A real Prometheus (Debian's 2.42, 1 s scrapes) scrapes the live API, a prefork worker and the
operator (under kopf, against kmock, reading the real RabbitMQ) while a small load runs:
uploads, polls, long polls, rejections and a failing job. Then every dashboard query parses and
returns a finite number at some point of the load, the alert rules load and evaluate, the
broker's unacked messages are scraped (management API), and the phase histograms count exactly
the jobs: end to end the terminal ones, queue wait and processing those a worker ended.

It lives beside the operator tests because it needs their kmock cluster and operator fixtures.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from imgconv_core.jobs import TERMINAL_STATUSES, JobStatus
from imgconv_core.processing import WORKER_LOST
from observability import dashboards
from observability.__main__ import RULE_FILE
from tests.support.client import ApiClient
from tests.support.images import corrupt_png, photo
from tests.support.kube_emulator import (
    AUTOSCALERS,
    MANAGEMENT_URL,
    ApiServer,
    Cluster,
    autoscaler,
    deployment,
    eventually,
    rabbit_source,
)
from tests.support.observability import (
    Prometheus,
    promtool_lint,
    running_prometheus,
    tool,
    wait_for,
)
from tests.support.services import (
    REDIS_DB,
    Process,
    Stack,
    amqp_url,
    destroy_stack,
    free_port,
    make_stack,
    start_api,
    start_worker,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio, pytest.mark.kmock(cls=ApiServer)]

BACKLOG = 8  # jobs waiting before any worker runs: the operator scales up for them
WINDOW = "1m"  # what `$__rate_interval` becomes here (Prometheus scrapes every second)


def terminal_jobs(stack: Stack) -> int:
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE status = ANY(%s)",
            ([s.value for s in TERMINAL_STATUSES],),
        ).fetchone()
    assert row is not None
    return int(row[0])


def worker_ended_jobs(stack: Stack) -> int:
    """Jobs a worker ended after claiming them (no job is canceled here; a job failed because
    its attempts ran out was ended by whoever found it so, without a queue wait of its own)."""
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE status = ANY(%s) AND started_at IS NOT NULL"
            " AND error_code IS DISTINCT FROM %s",
            ([JobStatus.COMPLETED.value, JobStatus.FAILED.value], WORKER_LOST),
        ).fetchone()
    assert row is not None
    return int(row[0])


def all_jobs_terminal(stack: Stack) -> bool:
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status IN ('queued', 'processing')) FROM jobs"
        ).fetchone()
    assert row is not None
    return int(row[0]) == 0


def run_load(api: str, stack: Stack, backlog: list[str], client: ApiClient) -> None:
    """Polls, long polls and uploads from a few clients, a failing job and two rejected uploads,
    until every job has ended; then a few more seconds of polls of finished jobs."""
    ids = list(backlog)
    stop = threading.Event()

    def poller(job_ids: list[str]) -> None:
        poll = ApiClient(api, token=client.token)
        etags: dict[str, str] = {}
        while not stop.is_set():
            for job_id in list(job_ids):
                headers = {"If-None-Match": etags[job_id]} if job_id in etags else {}
                answer = poll.http.get(f"/api/v1/jobs/{job_id}", headers=headers)
                if answer.status_code == 200:
                    etags[job_id] = answer.headers["etag"]
            poll.job(str(uuid.uuid4()))  # not_found
            time.sleep(0.05)

    def long_poller(job_ids: list[str]) -> None:
        poll = ApiClient(api, token=client.token)
        while not stop.is_set():
            for job_id in list(job_ids):
                poll.http.get(f"/api/v1/jobs/{job_id}", params={"wait": 2})

    threads = [
        threading.Thread(target=poller, args=(ids,)),
        threading.Thread(target=long_poller, args=(ids,)),
    ]
    for thread in threads:
        thread.start()
    try:
        for i in range(6):
            fmt = ("png", "jpeg", "webp")[i % 3]
            ids.extend(
                job["id"]
                for job in client.upload_ok([(f"l{i}.png", photo(48 + i, 32, "PNG"))], format=fmt)
            )
            time.sleep(0.3)
        ids.append(client.upload_ok([("broken.png", corrupt_png())], format="webp")[0]["id"])
        assert client.upload([("notes.txt", b"plain text")]).status_code == 415
        assert client.upload([("a.png", photo(8, 8, "PNG"))], format="nope").status_code == 422
        wait_for(lambda: all_jobs_terminal(stack), 120, "the load's jobs did not finish")
        time.sleep(5)  # polls of finished jobs, long polls answered at once
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expression) of every panel query, with Grafana's interval filled in."""
    found = []
    for uid in dashboards.DASHBOARDS:
        for title, expr in dashboards.queries(dashboards.render(uid)):
            found.append((uid, title, expr.replace("$__rate_interval", WINDOW)))
    return found


def finite(series: list[dict[str, Any]]) -> bool:
    """Whether a range query returned at least one finite number (NaN is what an empty
    histogram_quantile or a 0/0 ratio gives: a panel with nothing to show)."""
    return any(math.isfinite(float(value)) for one in series for _, value in one["values"])


def panels_without_data(prometheus: Prometheus, since: float) -> list[str]:
    """The panel queries that had no finite sample from `since` until now (asked over a range,
    as Grafana draws them: data from the load counts however long ago it ended)."""
    empty = []
    now = time.time()
    for uid, title, expr in dashboard_queries():
        prometheus.query(expr)  # raises if the expression does not parse
        if not finite(prometheus.query_range(expr, since, now)):
            empty.append(f"{uid} / {title}: {expr}")
    return empty


def trickle_until_panels_have_data(
    prometheus: Prometheus, client: ApiClient, since: float, deadline_seconds: float = 180
) -> None:
    """A rate needs two scrapes that differ, and a burst of jobs can end between two scrapes of
    series that did not exist before it (a histogram series is born with its first count): its
    rate stays 0 and its quantiles NaN. So, while a panel has nothing finite, one more good
    job at a time, seconds apart, polled to its end (a discovery too), as a user would."""
    deadline = time.monotonic() + deadline_seconds
    empty = panels_without_data(prometheus, since)
    n = 0
    while empty and time.monotonic() < deadline:
        job = client.upload_ok([(f"t{n}.png", photo(24 + n % 8, 16, "PNG"))], format="webp")[0]
        client.wait_terminal(job["id"])
        n += 1
        time.sleep(2)  # two scrapes at least
        empty = panels_without_data(prometheus, since)
    assert empty == [], "panel queries without a finite sample:\n" + "\n".join(empty)


def check_prometheus(
    prometheus: Prometheus,
    stack: Stack,
    targets: dict[str, str],
    client: ApiClient,
    since: float,
) -> None:
    """What the test promises, read from Prometheus itself (and promtool on each endpoint).
    `since`: when the load began."""
    for job, address in targets.items():
        assert promtool_lint(httpx.get(f"http://{address}", timeout=10).text) == "", job
    wait_for(
        lambda: all(prometheus.targets_up().values()) and len(prometheus.targets_up()) == 3,
        30,
        f"a target is down: {prometheus.targets_up()}",
    )
    trickle_until_panels_have_data(prometheus, client, since)

    # Unacked messages come only from the management API (IMGCONV_BROKER_MANAGEMENT_URL).
    unacked = 'imgconv_backlog_messages{state="unacked"}'
    wait_for(
        lambda: len(prometheus.query(unacked)) == 1,
        30,
        f"no {unacked} series: {prometheus.query('imgconv_backlog_messages')}",
    )

    def rules_evaluated() -> bool:
        groups = prometheus.rule_groups()
        rules = [rule for group in groups for rule in group["rules"]]
        return len(rules) == 6 and all(rule["health"] == "ok" for rule in rules)

    wait_for(rules_evaluated, 20, f"alert rules not loaded or failing: {prometheus.rule_groups()}")

    # The phase histograms agree with the job rows (a scrape may lag a second behind).
    expected = terminal_jobs(stack)
    wait_for(
        lambda: prometheus.value("sum(imgconv_job_end_to_end_seconds_count)") == expected,
        15,
        f"end-to-end count {prometheus.value('sum(imgconv_job_end_to_end_seconds_count)')} "
        f"!= {expected} terminal jobs",
    )
    by_worker = worker_ended_jobs(stack)
    assert 0 < by_worker <= expected
    for phase in ("queue_wait", "processing"):
        count = f"sum(imgconv_job_{phase}_seconds_count)"
        wait_for(
            lambda count=count: prometheus.value(count) == by_worker,
            30,
            f"{count} = {prometheus.value(count)} != {by_worker} jobs a worker ended",
        )
    failed = prometheus.value('sum(imgconv_job_end_to_end_seconds_count{outcome="failed"})')
    assert failed == 1
    assert prometheus.value('sum(imgconv_job_failures_total{code="decode_failed"})') == 1


async def test_prometheus_scrapes_the_live_system_under_load(
    cluster: Cluster, operator: dict[str, Any], log_dir: Path, tmp_path: Path
) -> None:
    tool("prometheus")
    stack = await asyncio.to_thread(make_stack, log_dir, REDIS_DB - 2)
    stack.overrides["IMGCONV_BROKER_MANAGEMENT_URL"] = MANAGEMENT_URL
    processes: list[Process] = []
    try:
        api_proc, api = await asyncio.to_thread(start_api, stack)
        processes.append(api_proc)
        worker_port = free_port()
        targets = {
            "imgconv-api": f"{api.removeprefix('http://')}/metrics",
            "imgconv-worker": f"127.0.0.1:{worker_port}/metrics",
            "imgconv-operator": f"127.0.0.1:{operator['metrics']}/metrics",
        }
        with running_prometheus(tmp_path / "prometheus", targets, [RULE_FILE]) as prometheus:
            started = time.time()
            client = await asyncio.to_thread(ApiClient, api)
            backlog = [
                job["id"]
                for job in await asyncio.to_thread(
                    client.upload_ok,
                    [(f"b{i}.png", photo(40, 30, "PNG")) for i in range(BACKLOG)],
                    format="webp",
                )
            ]
            # The operator sees the backlog (live AMQP count) and scales the Deployment up.
            cluster.seed("apps/v1/deployments", deployment("worker", 1))
            source = rabbit_source("conversions", vhost=stack.vhost, amqpUrl=amqp_url(stack.vhost))
            await cluster.create(AUTOSCALERS, autoscaler("imgconv", "worker", source))
            await eventually(lambda: cluster.replicas("worker") > 1, within=30, what="scale-up")

            multiproc = tmp_path / "multiproc"
            worker = await asyncio.to_thread(
                start_worker,
                stack,
                2,
                PROMETHEUS_MULTIPROC_DIR=str(multiproc),
                IMGCONV_WORKER_METRICS_PORT=str(worker_port),
            )
            processes.append(worker)
            await asyncio.to_thread(run_load, api, stack, backlog, client)
            await asyncio.to_thread(check_prometheus, prometheus, stack, targets, client, started)
            await cluster.delete(AUTOSCALERS, "imgconv")
    finally:
        for process in processes:
            await asyncio.to_thread(process.stop)
        await asyncio.to_thread(destroy_stack, stack)
