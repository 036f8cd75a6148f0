"""The job lifecycle as a client sees it: upload, poll (ETag, long poll), list, download,
cancel, delete, idempotency, isolation between clients; on both storage backends."""

from __future__ import annotations

import io
import threading
import time

import httpx
import pytest
from PIL import Image

from imgconv_core.settings import LOCAL_SECRET
from imgconv_core.tokens import issue_token
from tests.support.client import ApiClient
from tests.support.images import format_of, photo
from tests.support.services import Process


@pytest.fixture(params=["postgres", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs with its images in Postgres, then in S3 (SeaweedFS)."""
    value: str = request.param
    return value


def test_token_then_upload_poll_and_download(client: ApiClient, worker: Process) -> None:
    source = photo(800, 600)
    response = client.upload([("My Photo.jpg", source)], format="webp", quality=80, max_width=400)
    assert response.status_code == 202
    job = response.json()["jobs"][0]
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["source_format"] == "jpeg"
    assert job["target_format"] == "webp"
    assert (job["source_width"], job["source_height"]) == (800, 600)

    done = client.wait_terminal(job["id"])
    assert done["status"] == "completed", done
    assert (done["width"], done["height"]) == (400, 300)
    assert done["error"] is None

    result = client.http.get(done["links"]["result"])
    assert result.status_code == 200
    assert result.headers["content-type"] == "image/webp"
    assert format_of(result.content) == "WEBP"
    assert done["result_bytes"] == len(result.content)
    assert 'filename="My Photo.webp"' in result.headers["content-disposition"]
    assert "immutable" in result.headers["cache-control"]
    again = client.http.get(
        done["links"]["result"], headers={"If-None-Match": result.headers["etag"]}
    )
    assert again.status_code == 304

    original = client.http.get(done["links"]["source"])
    assert original.content == source
    assert original.headers["content-type"] == "image/jpeg"


def test_jpg_and_tif_aliases_and_palette_to_jpeg(client: ApiClient, worker: Process) -> None:
    palette = Image.new("P", (40, 30))
    palette.putpalette([i % 256 for i in range(768)])
    buf = io.BytesIO()
    palette.save(buf, "PNG", transparency=0)
    jobs = client.upload_ok([("p.png", buf.getvalue())], format="jpg")
    tif = client.upload_ok([("q.jpg", photo(50, 40))], format="tif")
    for job, fmt in ((jobs[0], "JPEG"), (tif[0], "TIFF")):
        done = client.wait_terminal(job["id"])
        assert done["status"] == "completed", done
        assert format_of(client.http.get(done["links"]["result"]).content) == fmt


def test_etag_304_and_retry_after(idle_client: ApiClient) -> None:
    job = idle_client.upload_ok([("a.jpg", photo(16, 16))])[0]
    first = idle_client.job(job["id"])
    assert first.status_code == 200
    assert first.json()["status"] == "queued"
    assert int(first.headers["retry-after"]) >= 1
    etag = first.headers["etag"]
    cached = idle_client.http.get(f"/api/v1/jobs/{job['id']}", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    # RFC 9110: a 304's Content-Length, if any, is the 200's length; 0 would be wrong.
    assert cached.headers.get("content-length", str(len(first.content))) == str(len(first.content))
    # A long poll without If-None-Match on an unchanged job answers after `wait`, unchanged.
    waited = idle_client.job(job["id"], wait=1)
    assert waited.status_code == 200
    assert waited.headers["etag"] == etag
    stale = idle_client.http.get(f"/api/v1/jobs/{job['id']}", headers={"If-None-Match": '"0"'})
    assert stale.status_code == 200


def test_long_poll_returns_when_the_job_changes(client: ApiClient, worker: Process) -> None:
    job = client.upload_ok([("a.jpg", photo(400, 300))])[0]
    seen = []
    etag = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        headers: dict[str, str] = {"If-None-Match": etag} if etag else {}
        response = client.http.get(
            f"/api/v1/jobs/{job['id']}", params={"wait": 25}, headers=headers
        )
        if response.status_code == 304:
            continue
        body = response.json()
        seen.append(body["status"])
        etag = response.headers["etag"]
        if body["status"] == "completed":
            break
    assert seen[-1] == "completed"
    # Each answer reported a different state: the poll returned on changes, not on timeouts.
    assert len(seen) == len(set(seen))


def test_another_clients_job_is_404_everywhere(api: str, client: ApiClient) -> None:
    job = client.upload_ok([("a.jpg", photo(16, 16))])[0]
    other = ApiClient(api)
    base = f"/api/v1/jobs/{job['id']}"
    assert other.http.get(base).status_code == 404
    assert other.http.get(f"{base}/source").status_code == 404
    assert other.http.get(f"{base}/result").status_code == 404
    assert other.http.delete(base).status_code == 404
    assert other.http.post(f"{base}/cancel").status_code == 404
    assert other.http.get("/api/v1/jobs").json()["items"] == []
    assert client.job(job["id"]).status_code == 200  # still there for its owner


def test_keyset_pages_newest_first_and_status_filter(idle_client: ApiClient) -> None:
    client = idle_client
    ids = [client.upload_ok([(f"{i}.jpg", photo(8, 8, seed=i))])[0]["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.http.get("/api/v1/jobs", params=params).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3
    assert client.http.post(f"/api/v1/jobs/{ids[0]}/cancel").status_code == 200
    canceled = client.http.get("/api/v1/jobs", params={"status": "canceled"}).json()["items"]
    assert [item["id"] for item in canceled] == [ids[0]]


def test_idempotency_key_returns_the_same_jobs(client: ApiClient) -> None:
    files = [("a.jpg", photo(16, 16)), ("b.jpg", photo(16, 16, seed=2))]
    first = client.upload(files, headers={"Idempotency-Key": "k-1"})
    second = client.upload(files, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202
    assert [j["id"] for j in first.json()["jobs"]] == [j["id"] for j in second.json()["jobs"]]
    conflict = client.upload(files[:1], headers={"Idempotency-Key": "k-1"})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert len(client.http.get("/api/v1/jobs").json()["items"]) == 2


def test_cancel_a_queued_job_then_delete_it(idle_client: ApiClient) -> None:
    client = idle_client
    job = client.upload_ok([("a.jpg", photo(64, 64))])[0]
    assert client.http.get(f"/api/v1/jobs/{job['id']}/result").status_code == 409
    response = client.http.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert response.json()["links"] == job["links"]
    body = client.job(job["id"]).json()
    assert body["status"] == "canceled"
    assert body["finished_at"] is not None
    # Canceling again changes nothing.
    again = client.http.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 200
    assert again.json() == body
    assert client.http.get(f"/api/v1/jobs/{job['id']}/source").status_code == 410
    result = client.http.get(f"/api/v1/jobs/{job['id']}/result")
    assert result.status_code == 409
    assert result.json()["error"]["code"] == "job_not_completed"
    # Deleting a finished job removes it.
    assert client.http.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
    assert client.job(job["id"]).status_code == 404


def test_delete_removes_a_queued_job_at_once(idle_client: ApiClient) -> None:
    client = idle_client
    job = client.upload_ok([("a.jpg", photo(64, 64))])[0]
    assert client.http.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
    for path in ("", "/source", "/result"):
        assert client.http.get(f"/api/v1/jobs/{job['id']}{path}").status_code == 404
    assert client.http.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 404
    assert client.http.delete(f"/api/v1/jobs/{job['id']}").status_code == 404
    listed = client.http.get("/api/v1/jobs", params={"limit": 100}).json()["items"]
    assert job["id"] not in [item["id"] for item in listed]


def test_corrupt_image_fails_with_a_clear_message(client: ApiClient, worker: Process) -> None:
    """A PNG with a valid header passes the upload checks, then cannot be decoded."""
    data = bytearray(photo(64, 64, "PNG"))
    start = data.index(b"IDAT") + 20
    data[start : start + 40] = bytes(b ^ 0x5A for b in data[start : start + 40])
    job = client.upload_ok([("broken.png", bytes(data))], format="webp")[0]
    done = client.wait_terminal(job["id"])
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "decode_failed"
    assert "PNG" in done["error"]["message"]
    assert "/" not in done["error"]["message"]  # no server paths leak
    assert client.http.get(done["links"]["result"]).status_code == 409


def test_stats_health_and_openapi(api: str, client: ApiClient, worker: Process) -> None:
    stats = client.http.get("/api/v1/stats").json()
    assert stats["workers_online"] >= 1
    assert stats["queue_depth"] >= 0
    assert set(stats["jobs_by_status"]) == {
        "queued",
        "processing",
        "completed",
        "failed",
        "canceled",
    }
    assert stats["limits"]["max_files"] == 20
    assert client.http.get("/healthz").status_code == 200
    ready = client.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "database": "ok",
        "redis": "ok",
        "broker": "ok",
        "storage": "ok",
    }
    spec = client.http.get("/openapi.json").json()
    assert "/api/v1/jobs/{job_id}" in spec["paths"]
    assert client.http.get("/docs").status_code == 200
    metrics = client.http.get("/metrics").text
    assert "imgconv_api_request_duration_seconds_count" in metrics


def test_many_long_polls_do_not_starve_other_requests(idle_api: str) -> None:
    """50 clients long-poll a job that does not change; other requests still answer while
    they wait."""
    client = ApiClient(idle_api)
    parked = client.upload_ok([("p.png", photo(8, 8))])[0]
    etag = client.job(parked["id"]).headers["etag"]
    finished: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    started = threading.Barrier(51)

    def long_poll() -> None:
        poller = ApiClient(idle_api, token=client.token)
        started.wait()
        response = poller.http.get(
            f"/api/v1/jobs/{parked['id']}", params={"wait": 8}, headers={"If-None-Match": etag}
        )
        with lock:
            statuses.append(response.status_code)
            finished.append(time.monotonic())
        poller.close()

    threads = [threading.Thread(target=long_poll) for _ in range(50)]
    for thread in threads:
        thread.start()
    started.wait()
    time.sleep(0.5)
    answered = []
    for i in range(5):
        assert client.http.get("/api/v1/jobs", params={"limit": 5}).status_code == 200
        assert client.upload_ok([(f"{i}.jpg", photo(8, 8, seed=i))])
        assert client.http.get("/healthz").status_code == 200
        answered.append(time.monotonic())
    with lock:
        parked_still = len(finished) == 0
    for thread in threads:
        thread.join()
    assert parked_still, "long polls returned before their wait was over"
    assert statuses == [304] * 50
    assert max(answered) < min(finished)  # ordering, not timing


def test_concurrent_retries_with_one_idempotency_key_create_one_upload(
    idle_client: ApiClient,
) -> None:
    files = [("a.jpg", photo(64, 64))]
    results: list[httpx.Response] = []

    def send() -> None:
        results.append(idle_client.upload(files, headers={"Idempotency-Key": "race-1"}))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [202] * 6
    assert len({r.json()["jobs"][0]["id"] for r in results}) == 1
    listed = idle_client.http.get("/api/v1/jobs").json()["items"]
    assert len(listed) == 1


def test_token_of_a_deleted_client_is_401_not_500(idle_api: str) -> None:
    """A token signed by us whose client row is gone (e.g. data was reset)."""
    orphan = issue_token(LOCAL_SECRET.encode())  # never stored: no row in `clients`
    ghost = ApiClient(idle_api, token=orphan.token)
    response = ghost.upload([("a.jpg", photo(16, 16))])
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
