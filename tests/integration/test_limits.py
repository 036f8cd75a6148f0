"""Limits that need their own API settings: streaming 413 and rate limits."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.support.client import ApiClient
from tests.support.images import photo
from tests.support.services import REDIS_DB, REDIS_HOST, REDIS_PORT, Stack, start_api


@pytest.fixture(scope="module")
def strict_api(stack: Stack) -> Iterator[str]:
    proc, url = start_api(
        stack,
        IMGCONV_MAX_FILE_BYTES=str(256 * 1024),
        IMGCONV_UPLOAD_RATE_PER_TOKEN="3/minute",
    )
    yield url
    proc.stop()


def test_file_over_the_limit_is_413(strict_api: str) -> None:
    client = ApiClient(strict_api)
    big = photo(1200, 1200, "PNG")
    assert len(big) > 256 * 1024
    response = client.upload([("big.png", big)])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"


def test_413_arrives_before_the_body_is_sent(strict_api: str) -> None:
    """The API answers once the limit is crossed, while the client still has 20 MB to send."""
    host, port = strict_api.removeprefix("http://").split(":")
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="format"\r\n\r\npng\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    total = 20 * 1024 * 1024
    token = ApiClient(strict_api).token
    request = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        sent = 0
        chunk = head + b"\0" * (64 * 1024 - len(head))
        reply = b""
        sock.settimeout(0.05)
        while sent < total:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
            chunk = b"\0" * (64 * 1024)
            try:
                reply = sock.recv(65536)
            except TimeoutError:
                continue
            if reply:
                break
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert sent < total // 2  # answered long before the body was complete


def test_uploads_are_rate_limited_per_token_with_retry_after(strict_api: str) -> None:
    client = ApiClient(strict_api)
    tiny = photo(8, 8)
    statuses = [client.upload([("a.jpg", tiny)]).status_code for _ in range(3)]
    assert statuses == [202, 202, 202]
    limited = client.upload([("a.jpg", tiny)])
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    # Another client is not affected by this client's limit.
    assert ApiClient(strict_api).upload([("a.jpg", tiny)]).status_code == 202


def test_uploads_and_tokens_are_rate_limited_per_ip(stack: Stack) -> None:
    redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB + 3}"  # fresh counters
    redis.Redis.from_url(redis_url).flushdb()
    proc, url = start_api(
        stack,
        IMGCONV_UPLOAD_RATE_PER_IP="4/minute",
        IMGCONV_TOKEN_RATE_PER_IP="3/minute",
        IMGCONV_REDIS_URL=redis_url,
    )
    try:
        clients = [ApiClient(url) for _ in range(3)]  # three tokens: the IP's whole budget
        tiny = photo(8, 8)
        statuses = [clients[i % 3].upload([("a.jpg", tiny)]).status_code for i in range(5)]
        assert statuses == [202, 202, 202, 202, 429]  # shared by every token from this IP
        token = httpx.post(f"{url}/api/v1/tokens")
        assert token.status_code == 429
        assert int(token.headers["Retry-After"]) >= 1
    finally:
        proc.stop()
