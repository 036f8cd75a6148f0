"""PostgreSQL unreachable: every route that needs it answers 503 `database_unavailable` with
Retry-After (never a 500, never a hang), polls included, and all works again once it is back.

The API reaches the shared PostgreSQL through a TCP proxy that the test cuts: the server itself
is never stopped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from imgconv_core.status_cache import job_key
from tests.support.client import ApiClient
from tests.support.images import photo
from tests.support.proxy import CuttableProxy
from tests.support.services import Process, Stack, free_port, start_api, wait_until


@pytest.fixture
def proxied_api(stack: Stack) -> Iterator[tuple[Process, str, CuttableProxy]]:
    """An API whose database connections go through a proxy the test can cut."""
    target = urlsplit(stack.database_url)
    assert target.hostname is not None
    assert target.port is not None
    proxy = CuttableProxy((target.hostname, target.port), free_port())
    proxy.restore()
    netloc = target.netloc.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    proc, url = start_api(stack, IMGCONV_DATABASE_URL=target._replace(netloc=netloc).geturl())
    yield proc, url, proxy
    proxy.cut()
    proc.stop()


def counted(url: str, metric: str, label: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf"^{metric}\{{{label}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def polls_failed(url: str) -> float:
    return counted(url, "imgconv_api_polls_total", 'outcome="error"')


def poll_503s(url: str) -> float:
    return counted(
        url,
        "imgconv_api_request_duration_seconds_count",
        'method="GET",route="/api/v1/jobs/{job_id}",status="503"',
    )


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def test_without_the_database_the_api_answers_503_then_recovers(
    stack: Stack, proxied_api: tuple[Process, str, CuttableProxy]
) -> None:
    proc, url, proxy = proxied_api
    client = ApiClient(url)
    client.http.timeout = httpx.Timeout(30)  # a hang fails the test instead of waiting forever
    image = photo(16, 16)
    [job] = client.upload_ok([("a.jpg", image)])
    polls_before, seconds_before = polls_failed(url), poll_503s(url)

    proxy.cut()
    # Not in the status cache: a poll needs the database. Removed after the cut, so nothing
    # can read the row to put it back; a write already under way (the outbox relay's, or a
    # sweep's cache healing) may still land once, hence the retry.
    cache = redis.Redis.from_url(stack.redis_url)
    for _ in range(5):
        cache.delete(job_key(job["id"]))
        answer = client.job(job["id"])
        if answer.status_code != 200:
            break
    assert_unavailable(answer)
    assert_unavailable(client.http.get("/api/v1/jobs"))
    assert_unavailable(client.upload([("b.jpg", image)]))
    assert polls_failed(url) == polls_before + 1
    assert poll_503s(url) == seconds_before + 1

    # ... and the document says so, for every operation (each one needs the database).
    document = httpx.get(f"{url}/openapi.json").json()
    for path, operations in document["paths"].items():
        if path.startswith("/api/v1/"):
            for method, operation in operations.items():
                assert "503" in operation["responses"], (method, path)

    proxy.restore()
    wait_until(lambda: client.job(job["id"]).status_code == 200, 30, "polls did not recover")
    assert client.http.get("/api/v1/jobs").status_code == 200
    assert client.upload([("b.jpg", image)]).status_code == 202
    # No request failed as a bug would (the sweeper and the outbox relay log their retries).
    assert "Exception in ASGI application" not in proc.output()
    assert "unhandled error" not in proc.output()
