"""Memory does not grow with what clients send: uploads spill to temporary files, and past the
process's budget of upload bytes an upload is answered 503 `busy` with Retry-After."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.support.client import ApiClient
from tests.support.images import bmp_of_about, photo
from tests.support.memory import MIB, bytes_held, kib_of
from tests.support.seaweedfs import SeaweedFS
from tests.support.services import Process, Stack, start_api, wait_until

FILE_BYTES = 19 * MIB
FILES = 20
UPLOADS = 3
# The documented bound (README, "Memory"): the API process's peak RSS over its idle RSS.
PEAK_OVER_IDLE = 300 * MIB


def stored_sources(stack: Stack, seaweed: SeaweedFS | None = None) -> tuple[int, int]:
    """(jobs, bytes of their source images) in the stack's database, or in `seaweed`."""
    if seaweed is not None:
        sizes = seaweed.object_sizes(f"{stack.vhost}/").items()
        sources = [size for key, size in sizes if key.endswith("/source")]
        return len(sources), sum(sources)
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM blobs WHERE key LIKE '%/source'"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.fixture
def seaweed_or_none(request: pytest.FixtureRequest, storage: str) -> SeaweedFS | None:
    """The suite's SeaweedFS when the test stores images in S3."""
    return request.getfixturevalue("seaweed") if storage == "s3" else None


@pytest.fixture
def roomy_api(
    private_stack: Stack, seaweed_or_none: SeaweedFS | None
) -> Iterator[tuple[Process, str]]:
    """An API whose budget admits the three uploads at once (each 20 x 19 MiB)."""
    if seaweed_or_none is not None:
        private_stack.overrides.update(seaweed_or_none.env(f"{private_stack.vhost}/"))
    proc, url = start_api(
        private_stack,
        IMGCONV_UPLOAD_BUDGET_BYTES=str(UPLOADS * FILES * (FILE_BYTES + MIB)),
    )
    yield proc, url
    proc.stop()


@pytest.mark.parametrize(
    ("uploads", "files", "storage"),
    [(UPLOADS, FILES, "postgres"), (16, 1, "postgres"), (UPLOADS, FILES, "s3")],
    ids=["3 uploads of 20 files", "16 uploads of 1 file", "3 uploads of 20 files to S3"],
)
def test_concurrent_large_uploads_stay_within_the_memory_bound(
    private_stack: Stack,
    roomy_api: tuple[Process, str],
    seaweed_or_none: SeaweedFS | None,
    uploads: int,
    files: int,
) -> None:
    proc, url = roomy_api
    client = ApiClient(url)
    # Warm up: the first upload, poll and list load what they need.
    job = client.upload_ok([("warm.jpg", photo(64, 64))])[0]
    assert client.job(job["id"]).status_code == 200
    assert client.http.get("/api/v1/jobs").status_code == 200
    idle = kib_of(proc.proc.pid, "VmRSS")

    image = bmp_of_about(FILE_BYTES)
    assert abs(len(image) - FILE_BYTES) < 8192
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(uploads)

    def upload(slot: int) -> None:
        uploader = ApiClient(url, token=client.token)
        uploader.http.timeout = httpx.Timeout(600)
        start.wait()
        response = uploader.upload([(f"{slot}-{i}.bmp", image) for i in range(files)])
        with lock:
            statuses.append(response.status_code)
        uploader.close()

    threads = [threading.Thread(target=upload, args=(slot,)) for slot in range(uploads)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(900)
    seconds = time.monotonic() - started
    peak = kib_of(proc.proc.pid, "VmHWM")
    print(
        f"\nAPI RSS idle {idle / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB "
        f"(+{(peak - idle) / MIB:.0f} MiB) for {uploads} concurrent uploads of {files} x "
        f"{FILE_BYTES // MIB} MiB in {seconds:.0f} s"
    )
    assert statuses == [202] * uploads
    assert stored_sources(private_stack, seaweed_or_none) == (
        1 + uploads * files,
        job["source_bytes"] + uploads * files * len(image),
    )
    assert peak - idle < PEAK_OVER_IDLE, f"peak {peak / MIB:.0f} MiB, idle {idle / MIB:.0f} MiB"


# Small limits, so that one upload of the largest size fills the budget.
SMALL_FILE = 256 * 1024
SMALL_BUDGET = 2 * (SMALL_FILE + 16 * 1024) + 64 * 1024  # Settings.max_request_bytes


@pytest.fixture(scope="module")
def tight_api(stack: Stack) -> Iterator[str]:
    proc, url = start_api(
        stack,
        IMGCONV_MAX_FILE_BYTES=str(SMALL_FILE),
        IMGCONV_MAX_FILES="2",
        IMGCONV_UPLOAD_BUDGET_BYTES=str(SMALL_BUDGET),
    )
    yield url
    proc.stop()


def chunked_upload(client: ApiClient, data: bytes) -> httpx.Response:
    """An upload without Content-Length: the budget is taken as the body arrives."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="format"\r\n\r\npng\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.png"\r\n\r\n'
        + data
        + b"\r\n--b--\r\n"
    )

    def pieces() -> Iterator[bytes]:
        for at in range(0, len(body), 16384):
            yield body[at : at + 16384]

    return client.http.post(
        "/api/v1/jobs",
        content=pieces(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )


def open_upload(url: str, client: ApiClient, content_length: int, sent: bytes) -> socket.socket:
    """An upload that announces `content_length` bytes, sends `sent` of them and waits."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    conn.sendall(
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
        f"{client.token}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {content_length}\r\n\r\n".encode()
        + sent
    )
    return conn


def file_parts_of(size: int) -> bytes:
    """The start of a multipart body of two files, `size` bytes long, the second unfinished."""
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="%d.png"\r\n\r\n'
    first = head % 1 + b"a" * (SMALL_FILE - 1024) + b"\r\n" + head % 2
    return first + b"b" * (size - len(first))


def test_past_the_budget_an_upload_is_busy_until_bytes_are_freed(tight_api: str) -> None:
    client = ApiClient(tight_api)
    held = SMALL_BUDGET - 100 * 1024
    # An upload that has sent most of the budget's bytes and then waits: they are held.
    with open_upload(tight_api, client, held + 1000, file_parts_of(held)):
        wait_until(lambda: bytes_held(tight_api) == held, 10, "the budget was not taken")
        medium = photo(330, 330, "PNG")
        assert 100 * 1024 < len(medium) < SMALL_FILE
        busy = client.upload([("m.png", medium)])  # refused on its Content-Length
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["code"] == "busy"
        assert int(busy.headers["Retry-After"]) >= 1
        chunked = chunked_upload(client, medium)  # refused once past the budget
        assert chunked.status_code == 503, chunked.text
        assert client.upload([("s.jpg", photo(16, 16))]).status_code == 202  # small still fits
    # The holder went away: its bytes are back.
    wait_until(lambda: bytes_held(tight_api) == 0, 10, "the budget was not given back")
    assert client.upload([("m.png", medium)]).status_code == 202
    assert chunked_upload(client, medium).status_code == 202


def test_an_announced_size_holds_nothing_until_it_arrives(tight_api: str) -> None:
    """Slow clients announcing the largest uploads do not lock the others out."""
    client = ApiClient(tight_api)
    announced = SMALL_BUDGET - 1000
    start = b'--b\r\nContent-Disposition: form-data; name="file"; filename="t.png"\r\n\r\nab'
    with (
        open_upload(tight_api, client, announced, start),
        open_upload(tight_api, client, announced, start),
    ):
        wait_until(lambda: bytes_held(tight_api) == 2 * len(start), 10, "nothing arrived")
        medium = photo(330, 330, "PNG")
        answer = client.upload([("m.png", medium)])
        assert answer.status_code == 202, answer.text
        assert chunked_upload(client, medium).status_code == 202
    wait_until(lambda: bytes_held(tight_api) == 0, 10, "the budget was not given back")
