"""Metrics of the real API and a real prefork worker: exact counts across processes, poll
outcomes counted in the fast path, uploads, phases, and `promtool check metrics` on each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.support.client import TERMINAL, ApiClient
from tests.support.images import corrupt_png, photo
from tests.support.observability import promtool_lint, samples, total, wait_for
from tests.support.services import (
    REDIS_DB,
    Stack,
    destroy_stack,
    free_port,
    make_stack,
    start_api,
    start_worker,
)

pytestmark = pytest.mark.integration

JOBS = 9  # good ones; one corrupt job more fails


@pytest.fixture(scope="module")
def stack(log_dir: Path) -> Iterator[Stack]:
    stack = make_stack(log_dir, redis_db=REDIS_DB - 1)
    yield stack
    destroy_stack(stack)


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[str]:
    proc, url = start_api(stack)
    yield url
    proc.stop()


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def pg(stack: Stack) -> str:
    return stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def statuses(stack: Stack, ids: list[str]) -> dict[str, str]:
    with psycopg.connect(pg(stack), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id::text, status FROM jobs WHERE id = ANY(%s::uuid[])", (ids,)
        ).fetchall()
    return dict(rows)


def children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return {int(p) for p in found.stdout.split()}


def plant_stale_counter(
    directory: Path,
    metric: str = "imgconv_worker_conversions",
    labels: dict[str, str] | None = None,
) -> None:
    """A counter file an earlier run left behind (pid 999999): it must not add to this run."""
    stale = MmapedDict(str(directory / "counter_999999.db"))  # type: ignore[no-untyped-call]
    labels = labels or {"outcome": "completed", "source_format": "png", "target_format": "webp"}
    key = json.dumps((metric, f"{metric}_total", labels, "left over"), sort_keys=True)
    stale.write_value(key, 1000.0, 0.0)  # type: ignore[no-untyped-call]
    stale.close()  # type: ignore[no-untyped-call]


def test_prefork_worker_counts_every_job_exactly_once(
    stack: Stack, api: str, tmp_path: Path
) -> None:
    """N jobs through 3 prefork children that are replaced after every task (memory limit),
    and one child SIGKILLed: the counters say exactly N, the live gauges count live children."""
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    plant_stale_counter(multiproc)
    port = free_port()
    worker = start_worker(
        stack,
        concurrency=3,
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        IMGCONV_WORKER_METRICS_PORT=str(port),
        # Far below any Python process: each child is replaced after its task.
        IMGCONV_WORKER_MAX_MEMORY_PER_CHILD_KB="1024",
    )
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        client = ApiClient(api)
        ids = []
        for start in range(0, JOBS, 3):
            files = [(f"{i}.png", photo(32 + i, 24, "PNG")) for i in range(start, start + 3)]
            ids += [job["id"] for job in client.upload_ok(files, format="webp")]
        ids += [client.upload_ok([("broken.png", corrupt_png())], format="webp")[0]["id"]]
        wait_for(
            lambda: set(statuses(stack, ids).values()) <= TERMINAL,
            120,
            f"jobs did not finish:\n{worker.output()[-3000:]}",
        )
        assert sorted(statuses(stack, ids).values()) == ["completed"] * JOBS + ["failed"]

        def settled() -> bool:
            text = scrape(metrics_url)
            return (
                total(text, "imgconv_worker_processes") == 3
                and total(text, "imgconv_worker_busy_processes") == 0
            )

        wait_for(settled, 30, "the worker's live gauges did not settle at 3 processes, 0 busy")
        text = scrape(metrics_url)
        assert total(text, "imgconv_worker_conversions_total") == JOBS + 1
        assert total(text, "imgconv_worker_conversions_total", outcome="completed") == JOBS
        assert total(text, "imgconv_job_end_to_end_seconds_count") == JOBS + 1
        assert total(text, "imgconv_job_end_to_end_seconds_count", outcome="completed") == JOBS
        assert total(text, "imgconv_job_processing_seconds_count") == JOBS + 1
        assert total(text, "imgconv_job_queue_wait_seconds_count") == JOBS + 1
        assert total(text, "imgconv_job_failures_total", code="decode_failed") == 1
        assert total(text, "imgconv_build_info", component="worker") == 1
        # More processes counted than ever lived at once: children really were replaced.
        assert len(list(multiproc.glob("counter_*.db"))) > 3
        assert promtool_lint(text) == ""

        # A child killed outright says nothing: the scrape must drop its live gauges itself.
        victim = min(children(worker.proc.pid))
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: victim not in children(worker.proc.pid) and len(children(worker.proc.pid)) == 3,
            30,
            "the pool did not replace the killed child",
        )
        wait_for(settled, 30, "a killed child still counts as a live process")
        assert not list(multiproc.glob(f"gauge_live*_{victim}.db"))
        # Its counts stay: counters never go down.
        assert total(scrape(metrics_url), "imgconv_worker_conversions_total") == JOBS + 1
    finally:
        worker.stop()


def test_api_processes_count_exactly_together(stack: Stack, tmp_path: Path) -> None:
    """`imgconv api --workers 2` with PROMETHEUS_MULTIPROC_DIR: whichever process answers a
    poll or a scrape, the counts are the sum over both, exactly, and an earlier run's files
    do not count."""
    multiproc = tmp_path / "api-multiproc"
    multiproc.mkdir()
    plant_stale_counter(multiproc, "imgconv_api_polls", {"outcome": "changed"})
    proc, url = start_api(stack, workers=2, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    try:
        client = ApiClient(url)
        job = client.upload_ok([("m.png", photo(8, 8, "PNG"))])[0]
        polls = 40
        for _ in range(polls):  # a new connection each: either process may take it
            answer = httpx.get(
                f"{url}/api/v1/jobs/{job['id']}",
                headers={"Authorization": f"Bearer {client.token}"},
            )
            assert answer.status_code == 200
        assert len({p.name.rsplit("_", 1)[1] for p in multiproc.glob("counter_*.db")}) >= 2
        for _ in range(6):  # scrapes too land on either process: all say the same
            text = scrape(f"{url}/metrics")
            assert total(text, "imgconv_api_polls_total", outcome="changed") == polls
            assert total(text, "imgconv_api_jobs_accepted_total") == 1
            assert total(text, "imgconv_build_info", component="api") == 1
        assert promtool_lint(text) == ""
    finally:
        proc.stop()


def test_one_api_process_with_a_multiprocess_dir_keeps_its_counts(
    stack: Stack, tmp_path: Path
) -> None:
    """`imgconv api` as ONE process with PROMETHEUS_MULTIPROC_DIR: the directory is emptied
    before any metric opens its file there, so this process's counters and live gauges are
    written to files a scrape reads (not to files deleted under it), and an earlier run's
    files still do not count."""
    multiproc = tmp_path / "api-one-multiproc"
    multiproc.mkdir()
    plant_stale_counter(multiproc, "imgconv_api_polls", {"outcome": "changed"})
    proc, url = start_api(stack, workers=1, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    try:
        client = ApiClient(url)
        job = client.upload_ok([("one.png", photo(8, 8, "PNG"))], format="webp")[0]
        polls = 5
        for _ in range(polls):
            assert client.job(job["id"]).status_code == 200
        text = scrape(f"{url}/metrics")
        assert total(text, "imgconv_api_polls_total", outcome="changed") == polls
        accepted = {"source_format": "png", "target_format": "webp"}
        assert total(text, "imgconv_api_jobs_accepted_total", **accepted) == 1
        # Unlabelled live gauges (their file opens at import): present, and at rest.
        found = samples(text)
        for gauge in (
            "imgconv_api_long_polls_in_progress",
            "imgconv_api_upload_bytes_held",
            "imgconv_api_upload_bytes_in_memory",
        ):
            assert [value for _, value in found.get(gauge, [])] == [0.0], gauge
        assert promtool_lint(text) == ""
    finally:
        proc.stop()


def test_polls_are_counted_by_outcome_and_source(stack: Stack, api: str) -> None:
    """No worker runs now: the jobs stay queued, so every outcome can be produced on purpose."""
    client = ApiClient(api)
    before = scrape(f"{api}/metrics")
    job = client.upload_ok([("q.png", photo(16, 16, "PNG"))], format="jpeg")[0]
    first = client.job(job["id"])
    assert first.status_code == 200
    etag = first.headers["etag"]
    not_modified = client.http.get(f"/api/v1/jobs/{job['id']}", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    timed_out = client.http.get(
        f"/api/v1/jobs/{job['id']}", params={"wait": 1}, headers={"If-None-Match": etag}
    )
    assert timed_out.status_code == 304
    assert client.job(str(uuid.uuid4())).status_code == 404
    assert (
        httpx.get(f"{api}/api/v1/jobs/{job['id']}", headers={"Authorization": "x"}).status_code
        == 401
    )
    assert client.http.get("/api/v1/jobs").status_code == 200  # answered by FastAPI
    after = scrape(f"{api}/metrics")

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("imgconv_api_polls_total", outcome="changed") == 1
    assert delta("imgconv_api_polls_total", outcome="not_modified") == 1
    assert delta("imgconv_api_polls_total", outcome="timeout") == 1
    assert delta("imgconv_api_polls_total", outcome="not_found") == 1
    assert delta("imgconv_api_polls_total", outcome="unauthorized") == 1
    # Three polls read the status (the random id and the bad token are refused before I/O;
    # the long poll reads twice: before and after subscribing).
    assert delta("imgconv_api_poll_reads_total", source="cache") == 4
    assert delta("imgconv_api_long_poll_wait_seconds_count", outcome="timeout") == 1
    assert total(after, "imgconv_api_long_polls_in_progress") == 0
    route = "/api/v1/jobs/{job_id}"
    assert delta("imgconv_api_request_duration_seconds_count", route=route, status="304") == 2
    # Routes answered by FastAPI carry the same whole template as the fast path's.
    listed = delta("imgconv_api_request_duration_seconds_count", route="/api/v1/jobs", status="200")
    assert listed == 1
    assert delta("imgconv_api_jobs_accepted_total", source_format="png", target_format="jpeg") == 1
    assert delta("imgconv_api_upload_bytes_total", source_format="png") == job["source_bytes"]

    def backlog_seen() -> bool:  # read at most every 2 s: the first scrape may be older
        text = scrape(f"{api}/metrics")
        return (
            total(text, "imgconv_backlog_jobs", status="queued") >= 1
            and total(text, "imgconv_backlog_messages", state="ready") >= 1
            and total(text, "imgconv_backlog_consumers") == 0
        )

    wait_for(backlog_seen, 10, "the backlog never showed the queued job and its message")
    assert total(after, "imgconv_build_info", component="api") == 1
    assert not any(
        "job_id" in labels or "client" in labels
        for series in samples(after).values()
        for labels, _ in series
    )


def test_rejections_cancels_and_discovery(stack: Stack, api: str) -> None:
    client = ApiClient(api)
    before = scrape(f"{api}/metrics")
    assert client.upload([("notes.txt", b"hello")]).status_code == 415
    assert client.upload([("a.png", photo(8, 8, "PNG"))], format="nope").status_code == 422
    queued = client.upload_ok([("c.png", photo(8, 8, "PNG"))])[0]
    assert client.http.post(f"/api/v1/jobs/{queued['id']}/cancel").status_code == 200
    # The first poll that sees the canceled job observes its discovery; later ones do not.
    for _ in range(3):
        assert client.job(queued["id"]).json()["status"] == "canceled"
    time.sleep(0.2)
    after = scrape(f"{api}/metrics")

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("imgconv_api_upload_rejections_total", code="invalid_files") == 1
    assert delta("imgconv_api_upload_rejections_total", code="unsupported_format") == 1
    assert delta("imgconv_job_end_to_end_seconds_count", outcome="canceled") == 1
    assert delta("imgconv_job_result_discovery_seconds_count", outcome="canceled") == 1
    assert promtool_lint(after) == ""


def test_a_job_out_of_attempts_is_counted_with_its_formats(
    stack: Stack, api: str, tmp_path: Path
) -> None:
    """A claim that finds the job out of attempts fails it: the worker's conversion counter
    names the job's formats (read from its row), never an empty label."""
    client = ApiClient(api)
    job = client.upload_ok([("spent.png", photo(8, 8, "PNG"))], format="webp")[0]
    with psycopg.connect(pg(stack), autocommit=True) as conn:
        # As if workers had crashed on it many times: the next claim gives up on it.
        conn.execute("UPDATE jobs SET attempts = 1000 WHERE id = %s", (job["id"],))
    port = free_port()
    worker = start_worker(
        stack,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "multiproc"),
        IMGCONV_WORKER_METRICS_PORT=str(port),
    )
    try:
        wait_for(
            lambda: statuses(stack, [job["id"]]) == {job["id"]: "failed"},
            60,
            f"the spent job did not fail:\n{worker.output()[-3000:]}",
        )
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        failed = {"outcome": "failed", "source_format": "png", "target_format": "webp"}
        wait_for(
            lambda: total(scrape(metrics_url), "imgconv_worker_conversions_total", **failed) == 1,
            30,
            f"no failed png->webp conversion counted:\n{scrape(metrics_url)}",
        )
        text = scrape(metrics_url)
        assert not [
            labels
            for labels, _ in samples(text).get("imgconv_worker_conversions_total", [])
            if "" in (labels["source_format"], labels["target_format"])
        ]
        assert promtool_lint(text) == ""
    finally:
        worker.stop()
