"""Slow clients are cut off: a trickling or stalled body, and headers that never end, get 408
and their connection closed, while other clients are served meanwhile."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.client import ApiClient
from tests.support.images import photo
from tests.support.services import Process, Stack, start_api, wait_until

TIMEOUT = 2  # seconds: IMGCONV_HEADER_TIMEOUT_SECONDS and IMGCONV_BODY_TIMEOUT_SECONDS here


@pytest.fixture(scope="module")
def impatient(stack: Stack) -> Iterator[tuple[Process, str]]:
    proc, url = start_api(
        stack,
        IMGCONV_HEADER_TIMEOUT_SECONDS=str(TIMEOUT),
        IMGCONV_BODY_TIMEOUT_SECONDS=str(TIMEOUT),
        IMGCONV_BODY_MIN_BYTES_PER_SECOND="1000",
    )
    yield proc, url
    proc.stop()


@pytest.fixture(scope="module")
def impatient_api(impatient: tuple[Process, str]) -> str:
    return impatient[1]


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def upload_head(url: str, token: str, length: int) -> bytes:
    host = url.removeprefix("http://")
    return (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def trickle(sock: socket.socket, data: bytes, every: float, limit: float) -> tuple[bytes, float]:
    """Send `data` a byte at a time until the server answers; returns (answer, seconds)."""
    started = time.monotonic()
    sock.settimeout(every)
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # the server closed the connection
            break
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            assert time.monotonic() - started < limit, "no answer while trickling"
            continue
        return answer, time.monotonic() - started
    raise AssertionError("the whole body was sent without an answer")


def read_to_close(sock: socket.socket, first: bytes) -> bytes:
    """The rest of the answer until the server closes the connection (fails if it does not)."""
    sock.settimeout(10)
    answer = first
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def body_of(answer: bytes) -> dict[str, object]:
    _, _, body = answer.partition(b"\r\n\r\n")
    parsed: dict[str, object] = json.loads(body)
    return parsed


def test_a_trickling_body_gets_408_and_its_connection_closed(impatient_api: str) -> None:
    token = ApiClient(impatient_api).token
    body = b"--XyZ\r\n" + b"x" * 10_000
    with connect(impatient_api) as sock:
        sock.sendall(upload_head(impatient_api, token, len(body)))
        first, seconds = trickle(sock, body, every=0.25, limit=TIMEOUT * 5)
        answer = read_to_close(sock, first)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in answer.lower()
    error = body_of(answer)["error"]
    assert isinstance(error, dict)
    assert error["code"] == "request_timeout"
    assert error["details"]["received_bytes"] < 3 * TIMEOUT / 0.25  # a few trickled bytes
    assert TIMEOUT - 0.5 <= seconds < TIMEOUT * 3


def test_a_body_that_stops_gets_408(impatient_api: str) -> None:
    token = ApiClient(impatient_api).token
    with connect(impatient_api) as sock:
        part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        sock.sendall(upload_head(impatient_api, token, 100_000) + part + b"x" * 5000)
        started = time.monotonic()
        answer = read_to_close(sock, b"")
        seconds = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert body_of(answer)["error"]["details"] == {  # type: ignore[index]
        "received_bytes": len(part) + 5000
    }
    assert TIMEOUT - 0.5 <= seconds < TIMEOUT * 3


def test_trickling_headers_get_408_and_their_connection_closed(impatient_api: str) -> None:
    host = impatient_api.removeprefix("http://")
    headers = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Slow: {'y' * 200}\r\n\r\n".encode()
    with connect(impatient_api) as sock:
        first, seconds = trickle(sock, headers, every=0.25, limit=TIMEOUT * 5)
        answer = read_to_close(sock, first)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert body_of(answer)["error"]["code"] == "request_timeout"  # type: ignore[index]
    assert TIMEOUT - 0.5 <= seconds < TIMEOUT * 3


def test_a_silent_connection_is_closed(impatient_api: str) -> None:
    with connect(impatient_api) as sock:
        started = time.monotonic()
        answer = read_to_close(sock, b"")
        seconds = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408")
    assert TIMEOUT - 0.5 <= seconds < TIMEOUT * 3


def test_other_clients_are_served_while_slow_ones_wait(impatient_api: str) -> None:
    slow = [connect(impatient_api) for _ in range(20)]
    try:
        for sock in slow:
            sock.sendall(b"POST /api/v1/jobs HTTP/1.1\r\n")
        client = ApiClient(impatient_api)
        started = time.monotonic()
        assert client.upload_ok([("a.jpg", photo(32, 32))])
        assert time.monotonic() - started < TIMEOUT  # not queued behind the slow ones
    finally:
        for sock in slow:
            sock.close()


def test_a_connection_answered_before_its_body_ended_is_closed(impatient_api: str) -> None:
    """A 413 sent while the client is still sending: the rest is not read, the connection ends
    (a client trickling the rest cannot hold it)."""
    token = ApiClient(impatient_api).token
    part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    with connect(impatient_api) as sock:
        sock.sendall(upload_head(impatient_api, token, 10**9) + part)
        answer = b""
        sock.settimeout(0.01)
        for _ in range(30 * 16):  # 30 MiB, over IMGCONV_MAX_FILE_BYTES: answered 413
            sock.sendall(b"x" * 65536)
            try:
                answer = sock.recv(65536)
                break
            except TimeoutError:
                continue
        closed = False
        deadline = time.monotonic() + 3 * TIMEOUT
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b"x")
                sock.settimeout(0.25)
                closed = sock.recv(65536) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert closed, "the server kept reading the body it had answered"


def rejections(url: str, code: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    metric = rf'^imgconv_api_upload_rejections_total\{{code="{code}"\}} (\S+)$'
    match = re.search(metric, text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_client_gone_mid_body_is_counted_not_logged_as_a_bug(
    impatient: tuple[Process, str],
) -> None:
    proc, url = impatient
    token = ApiClient(url).token
    before = rejections(url, "client_disconnected")
    part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    with connect(url) as sock:
        sock.sendall(upload_head(url, token, 100_000) + part + b"x" * 1000)
    wait_until(
        lambda: rejections(url, "client_disconnected") == before + 1, 30, "not counted", proc
    )
    assert "Traceback" not in proc.output()
