"""Images in S3 (a real SeaweedFS): where the bytes go, outages of the store at each step (each
test with a SeaweedFS of its own, stopped and started again), the orphan sweep, switching a
deployment's backend with old jobs present, streaming and presigned downloads."""

from __future__ import annotations

import contextlib
import secrets
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx
import psycopg
import pytest

from imgconv_core.db import job_store
from imgconv_core.db.models import Job
from imgconv_core.db.session import make_engine, make_session_factory, transaction
from imgconv_core.processing import Result, claim_job, complete_job
from imgconv_core.storage import blob_key
from imgconv_core.tokens import issue_token
from tests.support.client import ApiClient
from tests.support.images import bmp_of_about, format_of, photo
from tests.support.memory import MIB, kib_of
from tests.support.seaweedfs import SeaweedFS, seaweedfs
from tests.support.services import Stack, running, start_api, start_worker, wait_until


def sql(stack: Stack) -> psycopg.Connection[tuple[object, ...]]:
    """A plain autocommit connection to the stack's database, for looking at rows."""
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    return psycopg.connect(url, autocommit=True)


def job_rows(stack: Stack) -> list[tuple[object, ...]]:
    with sql(stack) as conn:
        return conn.execute("SELECT id, status, storage FROM jobs ORDER BY created_at").fetchall()


def blob_rows(stack: Stack) -> list[str]:
    with sql(stack) as conn:
        return [str(row[0]) for row in conn.execute("SELECT key FROM blobs ORDER BY key")]


@pytest.fixture
def weed(log_dir: Path) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test's own, free to stop."""
    with seaweedfs(log_dir) as server:
        yield server


@pytest.fixture
def s3_private(private_stack: Stack, weed: SeaweedFS) -> Stack:
    """The private stack with its images in `weed`; S3 errors answer at once (no retries)."""
    private_stack.overrides.update(weed.env())
    private_stack.overrides["IMGCONV_S3_MAX_RETRIES"] = "0"
    return private_stack


def test_images_go_to_the_bucket_and_nowhere_else(s3_private: Stack, weed: SeaweedFS) -> None:
    proc, url = start_api(s3_private)
    with running(proc), running(start_worker(s3_private)):
        client = ApiClient(url)
        source = photo(300, 200)
        job = client.upload_ok([("a.jpg", source)], format="png")[0]
        done = client.wait_terminal(job["id"])
        assert done["status"] == "completed", done
        assert sorted(weed.object_keys()) == [f"{job['id']}/result", f"{job['id']}/source"]
        assert blob_rows(s3_private) == []
        assert job_rows(s3_private) == [(uuid.UUID(job["id"]), "completed", "s3")]
        assert client.http.get(done["links"]["source"]).content == source
        assert format_of(client.http.get(done["links"]["result"]).content) == "PNG"
        # DELETE removes the objects too.
        assert client.http.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
        assert weed.object_keys() == []


def test_s3_down_at_upload_is_503_with_retry_after_and_stores_nothing(
    s3_private: Stack, weed: SeaweedFS
) -> None:
    proc, url = start_api(s3_private)
    with running(proc):
        client = ApiClient(url)
        with weed.down():
            response = client.upload([("a.jpg", photo(64, 64))])
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "storage_unavailable"
            assert int(response.headers["retry-after"]) >= 1
            ready = client.http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["storage"].startswith("unavailable")
            assert job_rows(s3_private) == []
        assert client.http.get("/readyz").status_code == 200
        job = client.upload_ok([("a.jpg", photo(64, 64))])[0]
        assert [row[0] for row in job_rows(s3_private)] == [uuid.UUID(job["id"])]


def test_s3_down_during_download_is_503_then_the_same_bytes(
    s3_private: Stack, weed: SeaweedFS
) -> None:
    proc, url = start_api(s3_private)
    with running(proc):
        client = ApiClient(url)
        source = photo(200, 100)
        job = client.upload_ok([("a.jpg", source)])[0]
        with weed.down():
            response = client.http.get(f"/api/v1/jobs/{job['id']}/source", timeout=30)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "storage_unavailable"
            assert "retry-after" in response.headers
        assert client.http.get(f"/api/v1/jobs/{job['id']}/source").content == source


def test_s3_down_at_delete_is_503_and_the_job_stays_until_it_is_back(
    s3_private: Stack, weed: SeaweedFS
) -> None:
    proc, url = start_api(s3_private)
    with running(proc):
        client = ApiClient(url)
        job = client.upload_ok([("a.jpg", photo(64, 64))])[0]
        with weed.down():
            response = client.http.delete(f"/api/v1/jobs/{job['id']}")
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "storage_unavailable"
            assert client.job(job["id"]).json()["status"] == "queued"
        assert client.http.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
        assert client.job(job["id"]).status_code == 404
        assert weed.object_keys() == []


def test_s3_down_during_a_conversion_is_retried_until_it_is_back(
    s3_private: Stack, weed: SeaweedFS
) -> None:
    proc, url = start_api(s3_private)
    with running(proc):
        client = ApiClient(url)
        job = client.upload_ok([("a.jpg", photo(64, 64))])[0]
        with weed.down():
            worker = start_worker(s3_private, IMGCONV_TRANSIENT_RETRY_LIMIT="8")
            wait_until(
                lambda: "Retry in" in worker.output(), 30, "the worker did not retry", worker
            )
        with running(worker):
            done = client.wait_terminal(job["id"], timeout=90)
        assert done["status"] == "completed", done
        assert done["attempts"] == 1  # transient retries give the claim back uncounted


def test_s3_down_through_every_retry_fails_the_job_with_a_clear_code(
    s3_private: Stack, weed: SeaweedFS
) -> None:
    proc, url = start_api(s3_private)
    with running(proc):
        client = ApiClient(url)
        job = client.upload_ok([("a.jpg", photo(64, 64))])[0]
        with weed.down():
            worker = start_worker(s3_private, IMGCONV_TRANSIENT_RETRY_LIMIT="1")
            with running(worker):
                done = client.wait_terminal(job["id"], timeout=60)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "storage_unavailable"
        assert "image store" in done["error"]["message"]


def test_an_api_killed_between_object_and_row_leaves_an_orphan_the_sweep_deletes(
    s3_private: Stack, weed: SeaweedFS
) -> None:
    doomed, doomed_url = start_api(s3_private, IMGCONV_TEST_EXIT_AFTER_OBJECT_PUT="1")
    with running(doomed):
        client = ApiClient(doomed_url)
        with pytest.raises(httpx.HTTPError):
            client.upload([("a.jpg", photo(64, 64))])
        wait_until(lambda: doomed.proc.poll() is not None, 10, "the API did not exit", doomed)
    [orphan] = weed.object_keys()
    assert orphan.endswith("/source")
    assert job_rows(s3_private) == []

    proc, url = start_api(
        s3_private, IMGCONV_S3_ORPHAN_GRACE_SECONDS="2", IMGCONV_SWEEP_INTERVAL_SECONDS="1"
    )
    with running(proc):
        kept = ApiClient(url).upload_ok([("b.jpg", photo(64, 64))])[0]
        wait_until(lambda: orphan not in weed.object_keys(), 30, "the orphan was not deleted", proc)
        # A committed job's object is not an orphan, however old.
        wait_until(lambda: len(job_rows(s3_private)) == 1, 5, "no row")
        assert weed.object_keys() == [f"{kept['id']}/source"]


def test_a_result_for_a_canceled_job_is_deleted_and_a_retry_keeps_one_result(
    s3_private: Stack, weed: SeaweedFS
) -> None:
    """complete_job as a worker runs it, against the real database and bucket."""
    settings = weed.settings()
    store = weed.store()
    engine = make_engine(settings.model_copy(update={"database_url": s3_private.database_url}))
    sessions = make_session_factory(engine)
    result = Result(photo(10, 10, "PNG"), "image/png", 10, 10)
    issued = issue_token(b"k" * 32)
    with transaction(sessions) as tx:
        job_store.create_client(tx, issued)
    ids = []
    for _ in range(2):
        new = job_store.NewJob(
            filename="a.jpg",
            source=job_store.BytesSource(photo(10, 10)),
            source_format="jpeg",
            source_mime="image/jpeg",
            width=10,
            height=10,
            target_format="png",
            options={},
            id=uuid.uuid4(),
        )
        with transaction(sessions) as tx:
            job_store.insert_jobs(tx, store, issued.client_id, [new])
            claim_job(tx, new.id, "host:1", lease=60, max_attempts=3)
        ids.append(new.id)
    canceled, retried = ids
    try:
        with transaction(sessions) as tx:
            job = tx.get(Job, canceled)
            assert job is not None
            job_store.cancel_job(tx, store, job)
        with transaction(sessions) as tx:
            assert complete_job(tx, store, canceled, "host:1", result) is None
        assert blob_key(canceled, "result") not in weed.object_keys()

        with transaction(sessions) as tx:
            assert complete_job(tx, store, retried, "host:1", result) is not None
        with transaction(sessions) as tx:  # a duplicate of the same conversion, too late
            assert complete_job(tx, store, retried, "host:2", result) is None
        results = [key for key in weed.object_keys() if key.endswith("/result")]
        assert results == [blob_key(retried, "result")]
    finally:
        engine.dispose()


@dataclass(frozen=True)
class SpilledSource:
    """An upload's file on disk that refuses to be read whole (as `contents()` would)."""

    file: BinaryIO
    size: int

    def contents(self) -> contextlib.AbstractContextManager[bytes]:
        raise AssertionError("read whole into memory")

    @contextlib.contextmanager
    def stream(self) -> Iterator[BinaryIO]:
        self.file.seek(0)
        yield self.file


def test_a_file_source_goes_to_s3_streamed_in_parts(s3_private: Stack, weed: SeaweedFS) -> None:
    settings = weed.settings()
    store = weed.store()
    engine = make_engine(settings.model_copy(update={"database_url": s3_private.database_url}))
    sessions = make_session_factory(engine)
    image = bmp_of_about(12 * MIB)  # more than two parts
    issued = issue_token(b"k" * 32)
    with transaction(sessions) as tx:
        job_store.create_client(tx, issued)
    try:
        with tempfile.TemporaryFile() as file, transaction(sessions) as tx:
            file.write(image)
            new = job_store.NewJob(
                filename="big.bmp",
                source=SpilledSource(file, len(image)),
                source_format="bmp",
                source_mime="image/bmp",
                width=2048,
                height=len(image) // (2048 * 3),
                target_format="png",
                options={},
                id=uuid.uuid4(),
            )
            assert job_store.insert_jobs(tx, store, issued.client_id, [new]) is not None
        with sessions() as tx:
            stored = store.get(tx, blob_key(new.id, "source"))
        assert stored is not None
        assert stored.content_type == "image/bmp"
        assert stored.data == image
    finally:
        engine.dispose()


def test_switching_from_postgres_to_s3_keeps_old_jobs_served_and_expired(
    private_stack: Stack, seaweed: SeaweedFS
) -> None:
    stack = private_stack
    proc, url = start_api(stack)
    with running(proc), running(start_worker(stack)):
        client = ApiClient(url)
        old_source = photo(120, 80)
        old = client.upload_ok([("old.jpg", old_source)], format="webp")[0]
        assert client.wait_terminal(old["id"])["status"] == "completed"
        gone = client.upload_ok([("gone.jpg", photo(60, 40))])[0]
        assert client.wait_terminal(gone["id"])["status"] == "completed"
    assert len(blob_rows(stack)) == 4

    prefix = f"{stack.vhost}/"
    stack.overrides.update(seaweed.env(prefix))
    proc, url = start_api(stack)
    with running(proc), running(start_worker(stack)):
        client = ApiClient(url, token=client.token)
        new = client.upload_ok([("new.jpg", photo(90, 60))], format="png")[0]
        assert client.wait_terminal(new["id"])["status"] == "completed"
        storage = {str(row[0]): row[2] for row in job_rows(stack)}
        assert storage == {old["id"]: "postgres", gone["id"]: "postgres", new["id"]: "s3"}
        assert sorted(seaweed.object_keys(prefix)) == [f"{new['id']}/result", f"{new['id']}/source"]
        # The old job is still served, from Postgres.
        assert client.http.get(f"/api/v1/jobs/{old['id']}/source").content == old_source
        result = client.http.get(f"/api/v1/jobs/{old['id']}/result")
        assert format_of(result.content) == "WEBP"
        # DELETE of an old job removes its Postgres blobs.
        assert client.http.delete(f"/api/v1/jobs/{gone['id']}").status_code == 204
        assert not any(key.startswith(gone["id"]) for key in blob_rows(stack))
        # Retention deletes old and new jobs with their images, wherever they are.
        with sql(stack) as conn:
            conn.execute("UPDATE jobs SET created_at = now() - interval '30 days'")
        wait_until(lambda: job_rows(stack) == [], 30, "retention did not delete the jobs", proc)
        assert blob_rows(stack) == []
        assert seaweed.object_keys(prefix) == []


def test_big_images_stream_in_pieces_from_both_backends(s3_private: Stack, weed: SeaweedFS) -> None:
    big = photo(2400, 1800, "PNG")  # noise: a few MiB, more than one download piece
    assert len(big) > 3 * 1024 * 1024
    for storage in ("postgres", "s3"):
        proc, url = start_api(s3_private, IMGCONV_STORAGE=storage)
        with running(proc):
            client = ApiClient(url)
            job = client.upload_ok([("big.png", big)])[0]
            with client.http.stream("GET", f"/api/v1/jobs/{job['id']}/source") as response:
                assert response.status_code == 200
                assert response.headers["content-length"] == str(len(big))
                assert response.headers["content-type"] == "image/png"
                body = b"".join(response.iter_raw())
            assert body == big
    assert [row[2] for row in job_rows(s3_private)] == ["postgres", "s3"]


DOWNLOADS = 6
BIG_IMAGE = 20 * MIB


def reset_peak_rss(pid: int) -> None:
    """Make a process's (and its children's) VmHWM start again from its current RSS."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for each in pids:
        Path(f"/proc/{each}/clear_refs").write_text("5")


@pytest.mark.parametrize("storage", ["postgres", "s3"])
def test_concurrent_big_downloads_are_not_held_in_memory(
    s3_private: Stack, weed: SeaweedFS, storage: str
) -> None:
    """Several clients download a 20 MiB image at once, each reading its body only after all
    of them got their headers: a buffered response would hold every body at that point."""
    image = bmp_of_about(BIG_IMAGE)
    proc, url = start_api(s3_private, IMGCONV_STORAGE=storage)
    with running(proc):
        client = ApiClient(url)
        client.http.timeout = httpx.Timeout(120)
        job = client.upload_ok([("big.bmp", image)])[0]
        # Warm up the download path, then measure the peak from here.
        assert client.http.get(f"/api/v1/jobs/{job['id']}/source").content == image
        reset_peak_rss(proc.proc.pid)
        idle = kib_of(proc.proc.pid, "VmRSS")
        all_started = threading.Barrier(DOWNLOADS, timeout=120)
        received: list[bytes] = []
        lock = threading.Lock()

        def download() -> None:
            with (
                httpx.Client(base_url=url, headers=client.http.headers, timeout=120) as http,
                http.stream("GET", f"/api/v1/jobs/{job['id']}/source") as response,
            ):
                assert response.status_code == 200
                all_started.wait()
                body = response.read()
            with lock:
                received.append(body)

        threads = [threading.Thread(target=download) for _ in range(DOWNLOADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        peak = kib_of(proc.proc.pid, "VmHWM")
    assert received == [image] * DOWNLOADS
    served = DOWNLOADS * len(image)
    print(
        f"\n{storage}: API peak RSS +{(peak - idle) / MIB:.0f} MiB serving {served / MIB:.0f} MiB"
    )
    # Streaming: a few MiB per download (its pieces, connections). Buffered: 1.5x what is served.
    assert peak - idle < served / 2, f"peak +{(peak - idle) / MIB:.0f} MiB"


def test_presigned_redirect_with_credentials_from_files(
    s3_private: Stack, weed: SeaweedFS, tmp_path: Path
) -> None:
    key_file, secret_file = tmp_path / "key", tmp_path / "secret"
    key_file.write_text(weed.access_key + "\n")
    secret_file.write_text(weed.secret_key + "\n")
    del s3_private.overrides["IMGCONV_S3_ACCESS_KEY_ID"]
    del s3_private.overrides["IMGCONV_S3_SECRET_ACCESS_KEY"]
    proc, url = start_api(
        s3_private,
        IMGCONV_S3_ACCESS_KEY_ID_FILE=str(key_file),
        IMGCONV_S3_SECRET_ACCESS_KEY_FILE=str(secret_file),
        IMGCONV_S3_PRESIGNED_DOWNLOADS="true",
    )
    with running(proc):
        client = ApiClient(url)
        source = photo(64, 48)
        job = client.upload_ok([("a.jpg", source)])[0]
        response = client.http.get(f"/api/v1/jobs/{job['id']}/source")
        assert response.status_code == 307
        location = response.headers["location"]
        assert location.startswith(weed.endpoint)
        fetched = httpx.get(location)  # no credentials: the signature is the permission
        assert fetched.status_code == 200
        assert fetched.content == source
        assert (
            httpx.get(location.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
        )

    wrong_secret = tmp_path / "wrong"
    wrong_secret.write_text("not-the-secret")
    proc, url = start_api(
        s3_private,
        IMGCONV_S3_ACCESS_KEY_ID_FILE=str(key_file),
        IMGCONV_S3_SECRET_ACCESS_KEY_FILE=str(wrong_secret),
    )
    with running(proc):
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["storage"].startswith("unavailable")


def test_a_rotated_key_pair_in_the_credential_files_is_used_without_a_restart(
    s3_private: Stack, weed: SeaweedFS, tmp_path: Path
) -> None:
    rotated = ("rotated-" + secrets.token_hex(6), secrets.token_hex(20))
    weed.other_keys = [rotated]  # both pairs work while the Secret is being rotated
    weed.stop(signal.SIGKILL)
    weed.start()
    key_file, secret_file = tmp_path / "key", tmp_path / "secret"
    key_file.write_text(weed.access_key)
    secret_file.write_text(weed.secret_key)
    del s3_private.overrides["IMGCONV_S3_ACCESS_KEY_ID"]
    del s3_private.overrides["IMGCONV_S3_SECRET_ACCESS_KEY"]
    proc, url = start_api(
        s3_private,
        IMGCONV_S3_ACCESS_KEY_ID_FILE=str(key_file),
        IMGCONV_S3_SECRET_ACCESS_KEY_FILE=str(secret_file),
    )
    with running(proc):
        client = ApiClient(url)
        first = client.upload_ok([("a.jpg", photo(64, 64))])[0]
        # The Secret now holds the new pair; then the old one is revoked.
        key_file.write_text(rotated[0])
        secret_file.write_text(rotated[1])
        weed.stop(signal.SIGKILL)
        weed.access_key, weed.secret_key = rotated
        weed.other_keys = []
        weed.start()
        wait_until(
            lambda: client.upload([("b.jpg", photo(64, 64))]).status_code == 202,
            60,
            "uploads did not work with the rotated key pair",
            proc,
        )
        assert client.http.get("/readyz").status_code == 200
        assert client.http.get(f"/api/v1/jobs/{first['id']}/source").status_code == 200
    assert len(weed.object_keys()) == 2
