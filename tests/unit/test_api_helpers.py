"""Pure API helpers: file names, Content-Disposition, client IP behind proxies, the raw 408,
the upload's document, the links of a job."""

from __future__ import annotations

import io
import json
import uuid
from http.client import HTTPResponse

import pytest
from starlette.requests import Request

from imgconv_api.http_server import timeout_response
from imgconv_api.paths import with_links
from imgconv_api.rate_limits import RateLimits
from imgconv_api.routes.jobs import content_disposition
from imgconv_api.schemas import upload_request_body
from imgconv_api.uploads import safe_filename
from imgconv_core.images.formats import MIME_TYPES, SOURCE_FORMATS
from imgconv_core.settings import Settings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\cat.png", "cat.png"),
        ("a\x00b\nc.gif", "abc.gif"),
        ("...hidden.png", "hidden.png"),
        ("", "file-1"),
        ("x" * 300 + ".jpg", "x" * 200),
    ],
)
def test_safe_filename(raw: str, expected: str) -> None:
    assert safe_filename(raw, "file-1") == expected


def test_content_disposition_has_ascii_fallback_and_utf8_name() -> None:
    header = content_disposition('Café "menu".webp')
    assert header.startswith('attachment; filename="Caf_ _menu_.webp"')
    assert "filename*=UTF-8''Caf%C3%A9%20%22menu%22.webp" in header


def request_from(peer: str, forwarded: str | None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 1234), "headers": headers})


def test_forwarded_for_is_trusted_only_from_configured_proxies() -> None:
    limits = RateLimits(Settings(mode="local", trusted_proxies=["10.0.0.0/8"]))
    # From a trusted proxy: the nearest untrusted hop is the client (spoofed entries ignored).
    assert limits.client_ip(request_from("10.1.2.3", "6.6.6.6, 203.0.113.9, 10.0.0.7")) == (
        "203.0.113.9"
    )
    # From anyone else the header is ignored.
    assert limits.client_ip(request_from("198.51.100.1", "1.2.3.4")) == "198.51.100.1"
    untrusting = RateLimits(Settings(mode="local"))
    assert untrusting.client_ip(request_from("10.1.2.3", "1.2.3.4")) == "10.1.2.3"


class _Raw:
    """Just enough of a socket for `HTTPResponse` to parse bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.data))


def test_slow_headers_answer_is_a_complete_408_that_closes_the_connection() -> None:
    answer = HTTPResponse(_Raw(timeout_response(2.5)))  # type: ignore[arg-type]
    answer.begin()
    assert (answer.status, answer.reason) == (408, "Request Timeout")
    assert answer.getheader("connection") == "close"
    assert answer.getheader("content-type") == "application/json"
    error = json.loads(answer.read())["error"]
    assert error["code"] == "request_timeout"
    assert "2.5 seconds" in error["message"]


def test_the_upload_document_names_the_image_types_we_read() -> None:
    """Not `image/*`: an SVG, say, is refused with 415."""
    body = upload_request_body(max_files=20)["content"]["multipart/form-data"]
    listed = body["encoding"]["file"]["contentType"].split(", ")
    assert set(listed) == {MIME_TYPES[source] for source in SOURCE_FORMATS}
    assert "image/svg+xml" not in listed
    assert "image/*" not in listed


def test_links_are_added_to_each_job_s_own_json() -> None:
    """The links member is kept per id: each job gets its own, again and again."""
    first, second = uuid.uuid4(), uuid.uuid4()
    for _ in range(2):
        for job_id in (first, second, str(second)):
            job = json.loads(with_links(json.dumps({"id": str(job_id)}).encode(), job_id))
            assert job["id"] == str(job_id)
            assert job["links"] == {
                "self": f"/api/v1/jobs/{job_id}",
                "result": f"/api/v1/jobs/{job_id}/result",
                "source": f"/api/v1/jobs/{job_id}/source",
            }
