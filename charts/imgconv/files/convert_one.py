"""helm test: convert one image end to end through the API (token, upload, poll, download).

Standard library and Pillow only (what the imgconv image has). Exit 0 when a PNG uploaded as a
WebP conversion comes back as a decodable WebP of the same size; otherwise a message and 1.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, NoReturn

from PIL import Image

API = os.environ.get("IMGCONV_TEST_API_URL", "http://127.0.0.1:8000").rstrip("/")
if not API.startswith(("http://", "https://")):
    raise SystemExit(f"IMGCONV_TEST_API_URL must be an http(s) URL, not {API!r}")
DEADLINE_SECONDS = float(os.environ.get("IMGCONV_TEST_DEADLINE_SECONDS", "120"))
TERMINAL = {"completed", "failed", "canceled"}


def call(
    method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One HTTP request; the status and body, whatever the status."""
    url = API + path
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=35) as response:  # noqa: S310 (http only)
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with the fields and one file part."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
            "\r\nContent-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def fail(message: str) -> NoReturn:
    """Stop the test with a message."""
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def main() -> None:
    """Run the conversion and check the result."""
    start = time.monotonic()
    status, body = call("POST", "/api/v1/tokens")
    if status != 201:
        fail(f"POST /api/v1/tokens answered {status}: {body[:200]!r}")
    auth = {"Authorization": f"Bearer {json.loads(body)['token']}"}

    source = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 90)).save(source, "PNG")
    form, content_type = multipart({"format": "webp"}, "helm-test.png", source.getvalue())
    status, body = call("POST", "/api/v1/jobs", form, {**auth, "Content-Type": content_type})
    if status != 202:
        fail(f"POST /api/v1/jobs answered {status}: {body[:300]!r}")
    job: dict[str, Any] = json.loads(body)["jobs"][0]
    print(f"uploaded job {job['id']}", flush=True)

    while job["status"] not in TERMINAL:
        if time.monotonic() - start > DEADLINE_SECONDS:
            fail(f"job {job['id']} still {job['status']} after {DEADLINE_SECONDS:.0f} s")
        status, body = call("GET", f"/api/v1/jobs/{job['id']}?wait=20", headers=auth)
        if status != 200:
            fail(f"GET /api/v1/jobs/{job['id']} answered {status}: {body[:200]!r}")
        job = json.loads(body)
    if job["status"] != "completed":
        fail(f"job {job['id']} ended {job['status']}: {job.get('error')}")

    status, body = call("GET", f"/api/v1/jobs/{job['id']}/result", headers=auth)
    if status != 200:
        fail(f"GET /api/v1/jobs/{job['id']}/result answered {status}")
    result = Image.open(io.BytesIO(body))
    if result.format != "WEBP" or result.size != (64, 48):
        fail(f"result is {result.format} {result.size}, expected WEBP (64, 48)")
    elapsed = time.monotonic() - start
    print(f"OK: job {job['id']} converted PNG -> WEBP in {elapsed:.1f} s", flush=True)


if __name__ == "__main__":
    main()
