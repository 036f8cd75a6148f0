"""The images as the chart runs them: read-only root, uid 10001, a tmpfs at /tmp, host networking,
against the machine's real PostgreSQL, Redis and RabbitMQ."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.client import ApiClient
from tests.support.containers import (
    FRONTEND_IMAGE,
    IMAGE,
    UID,
    Container,
    new_stack,
    podman,
    run_migrate,
    start_api_container,
    start_worker_container,
    started,
    wait_exited,
)
from tests.support.images import format_of, photo
from tests.support.proxy import CuttableProxy
from tests.support.services import (
    AMQP_HOST,
    AMQP_PORT,
    ROOT,
    Stack,
    amqp_url,
    delete_vhost,
    drop_database,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("images")


def pg(stack: Stack) -> str:
    return stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def job_row(stack: Stack, job_id: str) -> dict[str, Any]:
    with psycopg.connect(pg(stack)) as conn:
        cur = conn.execute(
            "SELECT status, claimed_by, finished_at, clock_timestamp() AS now "
            "FROM jobs WHERE id = %s",
            (job_id,),
        )
        row = cur.fetchone()
        assert row is not None
        return dict(zip([d.name for d in cur.description or []], row, strict=True))


def test_migrate_completes_and_two_started_at_once_both_succeed(tmp_path: Path) -> None:
    stack = new_stack(tmp_path)
    try:
        runs = [run_migrate(stack) for _ in range(2)]
        try:
            codes = [wait_exited(run) for run in runs]
            assert codes == [0, 0], [run.logs() for run in runs]
            logs = [run.logs() for run in runs]
            assert sum("Running upgrade" in log for log in logs) == 1, logs
        finally:
            for run in runs:
                run.remove()
        with psycopg.connect(pg(stack)) as conn:
            assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    finally:
        drop_database(stack.database_url)
        delete_vhost(stack.vhost)


def test_api_answers_health_and_readiness_and_a_worker_consumes(
    api: str, worker: Container
) -> None:
    assert httpx.get(f"{api}/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{api}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"].values()) == {"ok"}
    client = ApiClient(api)
    job = client.upload_ok([("a.jpg", photo(320, 200))], format="webp")[0]
    assert client.wait_terminal(job["id"], timeout=90)["status"] == "completed"
    assert worker.exec("imgconv", "worker-liveness").returncode == 0


def test_frontend_serves_the_page_and_forwards_the_api(frontend: str) -> None:
    page = httpx.get(f"{frontend}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "imgconv" in page.text
    token = httpx.post(f"{frontend}/api/v1/tokens", timeout=10)
    assert token.status_code == 201, token.text
    assert token.json()["token"]


@pytest.mark.usefixtures("worker")
def test_a_new_client_converts_an_image_through_the_frontend_port(frontend: str) -> None:
    client = ApiClient(frontend)
    job = client.upload_ok([("holiday.png", photo(640, 480))], format="jpeg")[0]
    done = client.wait_terminal(job["id"], timeout=90)
    assert done["status"] == "completed", done
    result = client.http.get(f"/api/v1/jobs/{job['id']}/result")
    assert result.status_code == 200
    assert format_of(result.content) == "JPEG"


def test_stopping_the_worker_lets_the_running_conversion_finish(private_stack: Stack) -> None:
    stack = private_stack
    api, url = start_api_container(stack)
    worker = start_worker_container(stack)
    with started(api), started(worker):
        client = ApiClient(url)
        # 6 MP to AVIF: several seconds of encoding, so the stop arrives mid-task.
        job_id = client.upload_ok([("big.jpg", photo(3000, 2000))], format="avif")[0]["id"]
        wait_until(lambda: job_row(stack, job_id)["status"] == "processing", 90, "never claimed")
        stopped_at = job_row(stack, job_id)["now"]
        worker.stop(timeout=120)
        assert worker.state() == "exited"
        assert worker.exit_code() == 0, worker.logs()  # warm shutdown, not SIGKILL (137)
        row = job_row(stack, job_id)
        assert row["status"] == "completed", worker.logs()
        assert row["finished_at"] > stopped_at  # it was still converting when SIGTERM came
        assert "Warm shutdown" in worker.logs()


def test_worker_liveness_and_health_check_fail_once_the_broker_is_cut(stack: Stack) -> None:
    proxy = CuttableProxy((AMQP_HOST, AMQP_PORT), free_port())
    proxy.restore()
    worker = start_worker_container(stack, IMGCONV_BROKER_URL=amqp_url(stack.vhost, proxy.port))
    try:
        with started(worker):

            def alive() -> bool:
                return worker.exec("imgconv", "worker-liveness").returncode == 0

            def health_check_passes() -> bool:
                return podman("healthcheck", "run", worker.name, check=False).returncode == 0

            wait_until(alive, 30, "a consuming worker is not alive")
            assert health_check_passes()
            proxy.cut()
            wait_until(lambda: not alive(), 60, "a worker cut off from its broker looks alive")
            assert not health_check_passes()
    finally:
        proxy.cut()


def shell(image: str, script: str) -> str:
    """Run `script` with /bin/sh in a throwaway container of `image`; returns stdout."""
    result = podman("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script)
    return result.stdout


@pytest.mark.parametrize("image", [IMAGE, FRONTEND_IMAGE])
def test_final_images_hold_no_compiler_and_run_as_uid_10001(image: str) -> None:
    found = shell(image, "for c in gcc cc c++ g++ clang make; do command -v $c; done; true")
    assert found.strip() == ""
    assert shell(image, "id -u; id -g").split() == [str(UID), str(UID)]
    config = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert config == f"{UID}:{UID}"


def test_the_python_image_has_no_pip_and_no_tests() -> None:
    listing = shell(
        IMAGE,
        "command -v pip pip3; ls /opt/imgconv/bin | grep -x 'pip.*'; "
        "find /opt/imgconv /root /tmp -name tests -o -name .cache -o -name '*.whl'; true",
    )
    assert listing.strip() == ""


def test_the_frontend_image_has_no_dev_dependencies_and_no_npm_cache() -> None:
    modules = shell(FRONTEND_IMAGE, "ls /app/node_modules; ls -d /root/.npm ~/.npm; true")
    names = set(modules.split())
    assert "next" in names  # the traced server's own modules are there
    assert names.isdisjoint({"typescript", "vitest", "eslint", "playwright-core", "tailwindcss"})


@pytest.mark.parametrize("image", [IMAGE, FRONTEND_IMAGE])
def test_images_carry_oci_labels(image: str) -> None:
    labels = podman("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    revision = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    parsed = json.loads(labels)
    assert parsed["org.opencontainers.image.version"] == version
    assert parsed["org.opencontainers.image.revision"] == revision
    assert parsed["org.opencontainers.image.source"].startswith("https://")


def test_entrypoint_is_imgconv_and_help_needs_no_settings() -> None:
    entrypoint = podman("image", "inspect", "--format", "{{json .Config.Entrypoint}}", IMAGE)
    assert entrypoint.stdout.strip() == '["imgconv"]'
    result = podman("run", "--rm", "--read-only", IMAGE, "--help")
    assert "worker-liveness" in result.stdout


def test_a_bad_setting_stops_the_container_with_one_line() -> None:
    result = podman(
        "run",
        "--rm",
        "--read-only",
        "--no-healthcheck",  # podman would log its own lines about health-check timers
        "--env",
        "IMGCONV_DATABASE_URL=mysql://db/x",
        IMAGE,
        "api",
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "IMGCONV_DATABASE_URL" in lines[0]
