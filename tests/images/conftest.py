"""Fixtures of the image tests: the images built once, a throwaway database, vhost and Redis db
on the machine's services, and an API and a worker running as containers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containers import (
    Container,
    ensure_images,
    migrated_stack,
    start_api_container,
    start_frontend_container,
    start_worker_container,
)
from tests.support.services import Stack


@pytest.fixture(scope="session")
def images() -> None:
    ensure_images()


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
    container, url = start_frontend_container(api)
    yield url
    container.remove()
