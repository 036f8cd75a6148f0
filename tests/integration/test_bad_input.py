"""Every kind of bad input gets a clear 4xx with our error shape, and nothing is stored."""

from __future__ import annotations

import io
import re
import struct
import zlib
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.client import ApiClient
from tests.support.images import photo


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "details"} <= set(body["error"]), body
    error: dict[str, Any] = body["error"]
    return error


def job_count(client: ApiClient) -> int:
    response = client.http.get("/api/v1/jobs", params={"limit": 100})
    assert response.status_code == 200
    return len(response.json()["items"])


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims huge dimensions (no pixel data worth decoding)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )


def animated_gif(frames: int, size: int = 4) -> bytes:
    # Neighbouring frames must differ, or Pillow merges them into one.
    images = [Image.new("RGB", (size, size), (i % 2 * 255, 0, 0)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=10, loop=0)
    return out.getvalue()


def test_missing_token_is_401(api: str) -> None:
    response = httpx.get(f"{api}/api/v1/jobs")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


def test_forged_token_is_401(api: str) -> None:
    forged = "A" * 43
    response = httpx.get(f"{api}/api/v1/jobs", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_text_file_named_jpg_is_rejected_as_not_an_image(client: ApiClient) -> None:
    response = client.upload([("holiday.jpg", b"just some text, not a picture\n" * 20)])
    assert response.status_code == 415
    error = error_of(response)
    assert error["code"] == "invalid_files"
    assert error["details"] == [
        {
            "index": 0,
            "filename": "holiday.jpg",
            "code": "not_an_image",
            "message": error["details"][0]["message"],
        }
    ]
    assert job_count(client) == 0


def test_empty_file_is_rejected(client: ApiClient) -> None:
    response = client.upload([("empty.png", b"")])
    assert response.status_code == 422
    assert error_of(response)["details"][0]["code"] == "empty_file"


def test_one_bad_file_rejects_the_whole_upload(client: ApiClient) -> None:
    good = photo(64, 48)
    response = client.upload([("a.jpg", good), ("b.txt.jpg", b"%PDF-1.4 nope"), ("c.jpg", good)])
    assert response.status_code == 415
    details = error_of(response)["details"]
    assert [d["filename"] for d in details] == ["b.txt.jpg"]
    assert job_count(client) == 0  # no orphan job from the good files


def test_too_many_pixels_is_413_from_the_header(client: ApiClient) -> None:
    response = client.upload([("huge.png", huge_png_header(12_000, 12_000))])
    assert response.status_code == 413
    assert error_of(response)["details"][0]["code"] == "image_too_large"


def test_too_many_frames_counts_frames_times_pixels(client: ApiClient) -> None:
    response = client.upload([("anim.gif", animated_gif(1001))])
    assert response.status_code == 413
    assert error_of(response)["details"][0]["code"] == "too_many_frames"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"format": "svg"}, "format"),
        ({"format": "png", "quality": "0"}, "quality"),
        ({"format": "png", "quality": "101"}, "quality"),
        ({"format": "png", "quality": "high"}, "quality"),
        ({"format": "png", "max_width": "-5"}, "max_width"),
        ({"format": "png", "strip_metadata": "perhaps"}, "strip_metadata"),
        ({"format": "png", "colour": "blue"}, "colour"),
    ],
)
def test_invalid_options_are_422(client: ApiClient, fields: dict[str, str], field: str) -> None:
    response = client.upload([("a.jpg", photo(32, 32))], None, **fields)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] in {"invalid_request", "unsupported_format"}
    assert field in response.text


def test_missing_format_is_422(client: ApiClient) -> None:
    parts = [("file", ("a.jpg", photo(32, 32), "image/jpeg"))]
    response = client.http.post("/api/v1/jobs", files=parts)
    assert response.status_code == 422
    assert "format" in error_of(response)["message"]


def test_no_files_is_422(client: ApiClient) -> None:
    response = client.http.post("/api/v1/jobs", data={"format": "png"}, files={"x": ("", b"")})
    assert response.status_code == 422


def test_not_multipart_is_422(client: ApiClient) -> None:
    response = client.http.post("/api/v1/jobs", json={"format": "png"})
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_request"


def test_too_many_files_is_413(client: ApiClient) -> None:
    tiny = photo(8, 8)
    response = client.upload([(f"{i}.jpg", tiny) for i in range(21)])
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_many_files"
    assert job_count(client) == 0


def test_unknown_job_id_and_malformed_id_are_404(client: ApiClient) -> None:
    assert client.job("00000000-0000-4000-8000-000000000000").status_code == 404
    assert client.job("not-a-uuid").status_code == 404


def test_bad_cursor_is_422(client: ApiClient) -> None:
    response = client.http.get("/api/v1/jobs", params={"cursor": "garbage!!"})
    assert response.status_code == 422


def test_bad_status_filter_is_422(client: ApiClient) -> None:
    response = client.http.get("/api/v1/jobs", params={"status": "exploded"})
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_request"


def test_wait_out_of_range_is_422(client: ApiClient) -> None:
    jobs = client.upload_ok([("a.jpg", photo(16, 16))])
    assert client.job(jobs[0]["id"], wait=31).status_code == 422


def polls_counted(url: str, outcome: str) -> float:
    match = re.search(
        rf'^imgconv_api_polls_total\{{outcome="{outcome}"\}} (\S+)$',
        httpx.get(f"{url}/metrics").text,
        re.M,
    )
    return float(match.group(1)) if match else 0.0


def test_malformed_polls_are_refused_and_counted(client: ApiClient) -> None:
    """Polls the fast path leaves to FastAPI count as poll outcomes too."""
    url = client.base_url
    not_found, error = polls_counted(url, "not_found"), polls_counted(url, "error")
    assert error_of(client.job("not-a-uuid"))["code"] == "job_not_found"
    [job] = client.upload_ok([("a.jpg", photo(16, 16))])
    refused = client.job(job["id"], wait="abc")
    assert refused.status_code == 422
    assert error_of(refused)["code"] == "invalid_request"
    assert polls_counted(url, "not_found") == not_found + 1
    assert polls_counted(url, "error") == error + 1
