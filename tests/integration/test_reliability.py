"""Nothing accepted is lost: worker crashes, broker and Redis outages, duplicate messages."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from imgconv_api.publisher import CeleryPublisher
from imgconv_core.settings import Settings
from tests.support.client import ApiClient
from tests.support.images import photo
from tests.support.proxy import CuttableProxy
from tests.support.seaweedfs import SeaweedFS
from tests.support.services import (
    AMQP_HOST,
    AMQP_PORT,
    Stack,
    amqp_url,
    free_port,
    running,
    start_api,
    start_worker,
    wait_until,
)


def job_row(stack: Stack, job_id: str) -> dict[str, Any]:
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "SELECT status, attempts, version, claimed_by, enqueued_at, error_code, storage "
            "FROM jobs WHERE id = %s",
            (job_id,),
        )
        row = cur.fetchone()
        assert row is not None
        names = [d.name for d in cur.description or []]
        return dict(zip(names, row, strict=True))


def slow_upload(client: ApiClient) -> str:
    """A job that takes a few seconds to convert (3 MP to AVIF)."""
    return str(client.upload_ok([("slow.jpg", photo(2000, 1500))], format="avif")[0]["id"])


def wait_processing(stack: Stack, job_id: str, previous: int | None = None) -> int:
    """Wait until a worker process (other than `previous`) claimed the job; returns its pid."""
    holder: dict[str, Any] = {}

    def claimed() -> bool:
        row = job_row(stack, job_id)
        holder.update(row)
        claimant = row["claimed_by"]
        return (
            row["status"] == "processing"
            and claimant is not None
            and not str(claimant).endswith(f":{previous}")
        )

    wait_until(claimed, 60, f"job {job_id} never started processing: {holder}")
    return int(str(holder["claimed_by"]).rpartition(":")[2])


def test_worker_child_killed_mid_task_job_still_completes(private_stack: Stack) -> None:
    api_proc, url = start_api(private_stack)
    with running(api_proc), running(start_worker(private_stack)):
        client = ApiClient(url)
        job_id = slow_upload(client)
        pid = wait_processing(private_stack, job_id)
        os.kill(pid, signal.SIGKILL)
        done = client.wait_terminal(job_id, timeout=120)
        assert done["status"] == "completed", done
        assert done["attempts"] == 2


def test_whole_worker_killed_then_replaced_job_still_completes(private_stack: Stack) -> None:
    api_proc, url = start_api(private_stack)
    with running(api_proc):
        client = ApiClient(url)
        worker = start_worker(private_stack)
        job_id = slow_upload(client)
        wait_processing(private_stack, job_id)
        worker.stop(signal.SIGKILL)
        assert job_row(private_stack, job_id)["status"] == "processing"
        with running(start_worker(private_stack)):
            done = client.wait_terminal(job_id, timeout=120)
        assert done["status"] == "completed", done
        assert done["attempts"] == 2


def test_a_job_that_keeps_killing_workers_ends_failed(private_stack: Stack) -> None:
    private_stack.overrides["IMGCONV_MAX_ATTEMPTS"] = "2"
    api_proc, url = start_api(private_stack)
    with running(api_proc), running(start_worker(private_stack)):
        client = ApiClient(url)
        job_id = slow_upload(client)
        pid = None
        for attempt in (1, 2):
            pid = wait_processing(private_stack, job_id, previous=pid)
            assert job_row(private_stack, job_id)["attempts"] == attempt
            os.kill(pid, signal.SIGKILL)
        done = client.wait_terminal(job_id, timeout=120)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "worker_lost"
        assert "2 times" in done["error"]["message"]


@pytest.mark.parametrize("storage", ["postgres", "s3"])
def test_duplicate_messages_convert_once(
    private_stack: Stack, storage: str, request: pytest.FixtureRequest
) -> None:
    prefix = f"{private_stack.vhost}/"
    if storage == "s3":
        seaweed: SeaweedFS = request.getfixturevalue("seaweed")
        private_stack.overrides.update(seaweed.env(prefix))
    api_proc, url = start_api(private_stack)
    with running(api_proc):
        client = ApiClient(url)
        job_id = client.upload_ok([("a.jpg", photo(300, 200))], format="webp")[0]["id"]
        settings = Settings(
            mode="local",
            broker_url=amqp_url(private_stack.vhost),
            database_url=private_stack.database_url,
        )
        publisher = CeleryPublisher(settings)
        assert publisher.publish([uuid.UUID(job_id)] * 3) == [uuid.UUID(job_id)] * 3
        # The upload's own message comes from the API's outbox relay, just after the 202.
        wait_until(lambda: publisher.queue_depth()[0] == 4, 10, "expected 1 + 3 messages")
        with running(start_worker(private_stack)) as worker:
            done = client.wait_terminal(job_id)
            wait_until(lambda: publisher.queue_depth()[0] == 0, 30, "duplicates not consumed")
            wait_until(lambda: worker.output().count("ignored") >= 3, 30, "duplicates not dropped")
        publisher.close()
        assert done["status"] == "completed"
        row = job_row(private_stack, job_id)
        assert row["attempts"] == 1  # claimed once
        assert row["version"] == 3  # queued -> processing -> completed, nothing more
        assert row["storage"] == storage
        if storage == "s3":
            assert sorted(seaweed.object_keys(prefix)) == [f"{job_id}/result", f"{job_id}/source"]


def test_broker_unreachable_during_upload_job_completes_when_back(private_stack: Stack) -> None:
    proxy = CuttableProxy((AMQP_HOST, AMQP_PORT), free_port())
    proxy.restore()
    api_proc, url = start_api(
        private_stack, IMGCONV_BROKER_URL=amqp_url(private_stack.vhost, proxy.port)
    )
    with running(api_proc), running(start_worker(private_stack)):
        client = ApiClient(url)
        proxy.cut()
        started = time.monotonic()
        response = client.upload([("a.jpg", photo(300, 200))], format="png")
        assert response.status_code == 202, response.text  # accepted although the broker is down
        assert time.monotonic() - started < 30  # and it did not hang
        job_id = response.json()["jobs"][0]["id"]
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"].startswith("unavailable")
        time.sleep(2)  # a few sweeps while the broker is down: the job must wait, not vanish
        row = job_row(private_stack, job_id)
        assert row["status"] == "queued"
        assert row["enqueued_at"] is None
        proxy.restore()
        done = client.wait_terminal(job_id, timeout=60)
        assert done["status"] == "completed", done
        assert job_row(private_stack, job_id)["enqueued_at"] is not None
    proxy.cut()


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A throwaway redis-server this test may kill (never the machine's shared one)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed on PATH"
    port = free_port()

    def launch() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: _redis_up(port), 10, "redis did not start")
        return proc

    proc = launch()
    procs = [proc]
    yield port, proc
    for p in procs:
        p.kill()


def _redis_up(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
    except redis.RedisError:
        return False


def test_redis_down_polls_still_answer(
    private_stack: Stack, own_redis: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, redis_proc = own_redis
    private_stack.redis_url = f"redis://127.0.0.1:{port}/0"
    api_proc, url = start_api(private_stack)
    with running(api_proc), running(start_worker(private_stack)):
        client = ApiClient(url)
        first = client.upload_ok([("a.jpg", photo(200, 100))], format="png")[0]
        assert client.wait_terminal(first["id"])["status"] == "completed"
        redis_proc.kill()
        redis_proc.wait()
        # Cached before the outage: now answered from Postgres.
        body = client.job(first["id"])
        assert body.status_code == 200
        assert body.json()["status"] == "completed"
        # New work during the outage: accepted, converted, and its polls (even long polls) see it.
        second = client.upload_ok([("b.jpg", photo(200, 100))], format="webp")[0]
        done = client.wait_terminal(second["id"], timeout=60)
        assert done["status"] == "completed"
        assert client.job(second["id"], headers=None).json()["status"] == "completed"
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert ready.json()["checks"]["redis"].startswith("unavailable")
