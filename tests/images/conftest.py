"""Fixtures of the image tests: the images built once, a throwaway database, vhost and Redis db
on the machine's services, and an API and a worker running as containers."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.containers import (
    FRONTEND_IMAGE,
    IMAGE,
    Container,
    container_env,
    ensure_images,
    podman,
    run_container,
)
from tests.support.services import (
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    Stack,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    free_port,
    wait_until,
)

# A Redis db of their own: the other suites use 10-15.
IMAGES_REDIS_DB = REDIS_DB - 3


@pytest.fixture(scope="session")
def images() -> None:
    ensure_images()


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


@pytest.fixture(scope="module")
def stack(images: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack shared by the module's API, worker and frontend containers."""
    with migrated_stack(tmp_path_factory.mktemp("image-logs")) as stack:
        yield stack


@pytest.fixture
def private_stack(images: None, tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own, whose jobs no other test's worker takes."""
    with migrated_stack(tmp_path) as stack:
        yield stack


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


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[str]:
    container, url = start_api_container(stack)
    yield url
    container.remove()


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[Container]:
    container = start_worker_container(stack)
    yield container
    container.remove()


@pytest.fixture(scope="module")
def frontend(api: str) -> Iterator[str]:
    port = free_port()
    container = run_container(
        FRONTEND_IMAGE,
        [],
        {"IMGCONV_API_URL": api, "PORT": str(port), "HOSTNAME": "127.0.0.1"},
        name="frontend",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url), 60, "")
    except AssertionError:
        logs = container.logs()
        container.remove()
        raise AssertionError(f"frontend container not up:\n{logs[-4000:]}") from None
    yield url
    container.remove()
