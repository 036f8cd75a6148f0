"""Real containers for tests: the project's images built with podman (on Debian stand-in bases,
since no registry can be pulled here) and run as the chart runs them: read-only root, uid 10001,
a tmpfs at /tmp only, host networking, configuration from IMGCONV_* variables."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.services import (
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    ROOT,
    Stack,
    amqp_url,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    free_port,
    wait_until,
)

ENGINE = "podman"
TAG = os.environ.get("IMGCONV_IMAGE_TAG", "dev")
IMAGE = f"localhost/imgconv:{TAG}"
FRONTEND_IMAGE = f"localhost/imgconv-frontend:{TAG}"
UID = 10001
# Production mode, as deployed: the secret must be real (32+ characters).
SECRET = "container-test-secret-" + "x" * 32


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS`; output captured as text."""
    return subprocess.run(
        [ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=check
    )


@lru_cache(maxsize=1)
def ensure_images() -> None:
    """Build both images once per test session (the engine's layer cache makes it quick)."""
    if shutil.which(ENGINE) is None:
        message = "podman is not installed (bash scripts/images/install_podman.sh, as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)  # outside CI only: with CI=true it failed above
    bases = os.environ.get("IMGCONV_TEST_IMAGE_BASES", "standin")
    build = subprocess.run(
        ["bash", "scripts/images/build.sh"],
        cwd=ROOT,
        env={**os.environ, "IMGCONV_IMAGE_BASES": bases, "IMGCONV_IMAGE_TAG": TAG},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(f"make images failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}")


def container_env(stack: Stack, **extra: str) -> dict[str, str]:
    """Only IMGCONV_* settings reach a container, as the chart's ConfigMap and Secret give them."""
    env = {key: value for key, value in stack.env().items() if key.startswith("IMGCONV_")}
    env.update(IMGCONV_MODE="production", IMGCONV_SECRET_KEY=SECRET)
    env["IMGCONV_BROKER_URL"] = amqp_url(stack.vhost)
    env.update(extra)
    return env


@dataclass
class Container:
    """A running container of the test session."""

    name: str

    def logs(self) -> str:
        """Everything the container printed."""
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (as its user)."""
        return podman("exec", self.name, *command, timeout=timeout, check=False)

    def state(self) -> str:
        """'running', 'exited', ..."""
        return podman("inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()

    def exit_code(self) -> int:
        """The exit code of a stopped container."""
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout)

    def stop(self, timeout: int = 30) -> None:
        """`podman stop`: SIGTERM to PID 1, SIGKILL after `timeout` seconds."""
        podman("stop", "--time", str(timeout), self.name, timeout=timeout + 60, check=False)

    def remove(self) -> None:
        """Remove the container, running or not."""
        podman("rm", "--force", "--time", "0", self.name, check=False)


def run_container(
    image: str, args: list[str], env: Mapping[str, str], *, name: str = "imgconv-test"
) -> Container:
    """Start a detached container the way the chart runs its pods."""
    unique = f"{name}-{uuid.uuid4().hex[:8]}"
    flags = [
        "--detach",
        "--name",
        unique,
        "--network",
        "host",
        "--read-only",
        "--read-only-tmpfs=false",  # nothing writable but what is mounted: /tmp
        "--tmpfs",
        "/tmp:rw,size=256m,mode=1777",
        "--user",
        f"{UID}:{UID}",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
    ]
    for key, value in env.items():
        flags += ["--env", f"{key}={value}"]
    podman("run", *flags, image, *args)
    return Container(unique)


@contextlib.contextmanager
def started(container: Container) -> Iterator[Container]:
    """Remove the container when the block ends; print its logs if the block failed."""
    try:
        yield container
    except BaseException:
        print(f"--- logs of {container.name} ---\n{container.logs()[-6000:]}")
        raise
    finally:
        container.remove()


# A Redis db of their own: the other suites use 10-15.
IMAGES_REDIS_DB = REDIS_DB - 3


def new_stack(log_dir: Path) -> Stack:
    """A fresh, unmigrated database with a vhost and an empty Redis db."""
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=IMAGES_REDIS_DB).flushdb()
    return Stack(
        database_url=create_database(),
        vhost=create_vhost(),
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{IMAGES_REDIS_DB}",
        log_dir=log_dir,
    )


def run_migrate(stack: Stack) -> Container:
    """`imgconv migrate` in a container (it exits when done)."""
    return run_container(IMAGE, ["migrate"], container_env(stack), name="imgconv-migrate")


def wait_exited(container: Container, timeout: float = 120) -> int:
    """Wait for a container to exit; returns its exit code."""
    podman("wait", container.name, timeout=timeout)
    return container.exit_code()


@contextlib.contextmanager
def migrated_stack(log_dir: Path) -> Iterator[Stack]:
    """A stack migrated by the image itself, removed afterwards."""
    stack = new_stack(log_dir)
    try:
        migrate = run_migrate(stack)
        try:
            assert wait_exited(migrate) == 0, migrate.logs()
        finally:
            migrate.remove()
        yield stack
    finally:
        drop_database(stack.database_url)
        delete_vhost(stack.vhost)


def healthy(url: str) -> bool:
    """Whether `url` answers 200."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_api_container(stack: Stack) -> tuple[Container, str]:
    """`imgconv api` in a container; returns it and its URL once /readyz answers 200."""
    port = free_port()
    api = run_container(
        IMAGE, ["api", "--host", "127.0.0.1", "--port", str(port)], container_env(stack), name="api"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(f"{url}/readyz"), 60, "")
    except AssertionError:
        logs = api.logs()
        api.remove()
        raise AssertionError(f"API container not ready:\n{logs[-4000:]}") from None
    return api, url


def start_worker_container(stack: Stack, **extra: str) -> Container:
    """`imgconv worker` in a container; returns once it consumes."""
    # Host networking shares one host name: each worker needs its own node name.
    node = f"w{uuid.uuid4().hex[:6]}@%h"
    worker = run_container(
        IMAGE,
        ["worker", "--concurrency", "1", "--hostname", node],
        container_env(stack, **extra),
        name="worker",
    )
    try:
        wait_until(lambda: "ready." in worker.logs() or worker.state() != "running", 90, "")
        assert worker.state() == "running", "exited"
    except AssertionError:
        logs = worker.logs()
        worker.remove()
        raise AssertionError(f"worker container did not start:\n{logs[-4000:]}") from None
    return worker


def start_frontend_container(api_url: str) -> tuple[Container, str]:
    """The frontend image forwarding /api to `api_url`; returns it and its URL once it answers."""
    port = free_port()
    container = run_container(
        FRONTEND_IMAGE,
        [],
        {"IMGCONV_API_URL": api_url, "PORT": str(port), "HOSTNAME": "127.0.0.1"},
        name="frontend",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url), 60, "")
    except AssertionError:
        logs = container.logs()
        container.remove()
        raise AssertionError(f"frontend container not up:\n{logs[-4000:]}") from None
    return container, url
