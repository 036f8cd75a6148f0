"""Integration fixtures: a real database, RabbitMQ vhost and Redis db, real API and worker
processes. These need the machine's PostgreSQL, Redis and RabbitMQ and never skip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.client import ApiClient
from tests.support.services import (
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    Process,
    Stack,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    migrate,
    start_api,
    start_worker,
)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


def make_stack(log_dir: Path, redis_db: int = REDIS_DB) -> Stack:
    url = create_database()
    migrate(url)
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db).flushdb()
    return Stack(
        database_url=url,
        vhost=create_vhost(),
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        log_dir=log_dir,
    )


def destroy_stack(stack: Stack) -> None:
    drop_database(stack.database_url)
    delete_vhost(stack.vhost)


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
def api(stack: Stack) -> Iterator[str]:
    proc, url = start_api(stack)
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def worker(stack: Stack) -> Iterator[Process]:
    proc = start_worker(stack)
    yield proc
    proc.stop()


@pytest.fixture
def client(api: str) -> Iterator[ApiClient]:
    client = ApiClient(api)
    yield client
    client.close()


@pytest.fixture(scope="session")
def idle_api(log_dir: Path) -> Iterator[str]:
    """An API whose queue no worker consumes: its jobs stay `queued` (deterministic states)."""
    stack = make_stack(log_dir, redis_db=REDIS_DB + 2)
    proc, url = start_api(stack)
    yield url
    proc.stop()
    destroy_stack(stack)


@pytest.fixture
def idle_client(idle_api: str) -> Iterator[ApiClient]:
    client = ApiClient(idle_api)
    yield client
    client.close()
