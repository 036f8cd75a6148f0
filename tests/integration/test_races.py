"""Races between a client and a worker (or two requests), driven deterministically: the test
holds a job's row lock in its own transaction, waits until Postgres reports the API's request
waiting on that lock, and only then lets the other side commit."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import pytest
from sqlalchemy.orm import Session, sessionmaker

from imgconv_core.db import job_store
from imgconv_core.db.models import Job
from imgconv_core.db.session import make_engine, make_session_factory, transaction
from imgconv_core.images.formats import ImageFormat
from imgconv_core.job_ids import new_job_id
from imgconv_core.processing import Result, claim_job, complete_job
from imgconv_core.settings import LOCAL_SECRET, Settings
from imgconv_core.storage import BLOB_ROLES, BlobRole, BlobStore, PostgresBlobStore, blob_key
from imgconv_core.tokens import verify_token
from imgconv_core.uploads import ConversionRequest, upload_fingerprint
from tests.support.client import ApiClient
from tests.support.images import bmp_of_about, photo
from tests.support.memory import bytes_held
from tests.support.seaweedfs import SeaweedFS
from tests.support.services import REDIS_DB, Stack, destroy_stack, make_stack, start_api, wait_until

T = TypeVar("T")
WORKER = "race-test-worker:1"


@pytest.fixture(scope="module")
def race_backend(request: pytest.FixtureRequest) -> str:
    """Where the race stack keeps images: Postgres, or what a test is parametrised with."""
    return str(getattr(request, "param", "postgres"))


@pytest.fixture(scope="module")
def race_stack(log_dir: Path, race_backend: str, request: pytest.FixtureRequest) -> Iterator[Stack]:
    stack = make_stack(log_dir, redis_db=REDIS_DB + 1)
    if race_backend == "s3":
        seaweed: SeaweedFS = request.getfixturevalue("seaweed")
        stack.overrides.update(seaweed.env(prefix=f"{stack.vhost}/"))
    yield stack
    destroy_stack(stack)


@pytest.fixture(scope="module")
def race_store(race_stack: Stack, race_backend: str, request: pytest.FixtureRequest) -> BlobStore:
    """The store the race stack's API keeps images in."""
    if race_backend == "s3":
        seaweed: SeaweedFS = request.getfixturevalue("seaweed")
        return seaweed.store(prefix=f"{race_stack.vhost}/")
    return PostgresBlobStore()


def stored_images(
    sessions: sessionmaker[Session], store: BlobStore, job_id: uuid.UUID
) -> list[BlobRole]:
    """The images of a job that its store holds."""
    with sessions() as tx:
        return [role for role in BLOB_ROLES if store.get(tx, blob_key(job_id, role)) is not None]


BOTH_BACKENDS = pytest.mark.parametrize("race_backend", ["postgres", "s3"], indirect=True)


@pytest.fixture(scope="module")
def race_api(race_stack: Stack) -> Iterator[str]:
    """An API with no worker: the test plays the worker's part itself."""
    proc, url = start_api(race_stack)
    yield url
    proc.stop()


@pytest.fixture(scope="module")
def sessions(race_stack: Stack) -> Iterator[sessionmaker[Session]]:
    settings = Settings(mode="local", database_url=race_stack.database_url)
    engine = make_engine(settings, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


def lock_waiters(stack: Stack) -> int:
    """How many sessions of the stack's database wait for a row lock right now."""
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def in_background(call: Callable[[], T]) -> Callable[[], T]:
    """Run `call` in a thread; the returned function joins it and gives its result."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()

    def join() -> T:
        thread.join(30)
        assert result, "the request did not finish"
        return result[0]

    return join


def claim(sessions: sessionmaker[Session], job_id: uuid.UUID) -> None:
    """Play a worker that took the job."""
    with transaction(sessions) as tx:
        claimed = claim_job(tx, job_id, WORKER, lease=300, max_attempts=3)
    assert claimed.job is not None


def finish_while(
    stack: Stack,
    sessions: sessionmaker[Session],
    store: BlobStore,
    job_id: uuid.UUID,
    request: Callable[[], T],
) -> T:
    """Complete a claimed job, committing only once `request` waits for the job's row lock."""
    done = Result(photo(8, 8, "PNG"), "image/png", 8, 8)
    with transaction(sessions) as tx:
        assert complete_job(tx, store, job_id, WORKER, done) is not None
        answer = in_background(request)
        wait_until(lambda: lock_waiters(stack) >= 1, 20, "the request never waited for the lock")
    return answer()


@BOTH_BACKENDS
def test_delete_while_the_job_completes_deletes_it(
    race_stack: Stack, race_api: str, sessions: sessionmaker[Session], race_store: BlobStore
) -> None:
    client = ApiClient(race_api)
    job_id = uuid.UUID(client.upload_ok([("a.jpg", photo(32, 32))])[0]["id"])
    claim(sessions, job_id)
    response = finish_while(
        race_stack,
        sessions,
        race_store,
        job_id,
        lambda: client.http.delete(f"/api/v1/jobs/{job_id}"),
    )
    assert response.status_code == 204, response.text
    assert client.job(str(job_id)).status_code == 404
    with sessions() as tx:
        assert tx.get(Job, job_id) is None
    assert stored_images(sessions, race_store, job_id) == []


@BOTH_BACKENDS
def test_cancel_while_the_job_completes_answers_it_completed(
    race_stack: Stack, race_api: str, sessions: sessionmaker[Session], race_store: BlobStore
) -> None:
    client = ApiClient(race_api)
    job_id = uuid.UUID(client.upload_ok([("a.jpg", photo(32, 32))])[0]["id"])
    claim(sessions, job_id)
    response = finish_while(
        race_stack,
        sessions,
        race_store,
        job_id,
        lambda: client.http.post(f"/api/v1/jobs/{job_id}/cancel"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert client.job(str(job_id)).json()["status"] == "completed"
    assert client.http.get(f"/api/v1/jobs/{job_id}/result").status_code == 200


@BOTH_BACKENDS
def test_a_worker_finishing_after_a_cancel_stores_nothing(
    race_stack: Stack, race_api: str, sessions: sessionmaker[Session], race_store: BlobStore
) -> None:
    client = ApiClient(race_api)
    job_id = uuid.UUID(client.upload_ok([("a.jpg", photo(32, 32))])[0]["id"])
    claim(sessions, job_id)
    store = race_store
    done = Result(photo(8, 8, "PNG"), "image/png", 8, 8)

    def worker_finishes() -> Job | None:
        with transaction(sessions) as tx:
            return complete_job(tx, store, job_id, WORKER, done)

    with transaction(sessions) as tx:
        locked = job_store.lock_job(tx, job_id)
        assert locked is not None
        assert job_store.cancel_job(tx, store, locked).status == "canceled"
        finished = in_background(worker_finishes)
        wait_until(lambda: lock_waiters(race_stack) >= 1, 20, "the worker never waited")
    assert finished() is None  # the worker's conditional UPDATE found the job canceled
    with sessions() as tx:
        job = tx.get(Job, job_id)
        assert job is not None
        assert (job.status, job.result_bytes) == ("canceled", None)
    assert stored_images(sessions, store, job_id) == []


def test_replay_after_the_jobs_were_deleted_is_a_clear_4xx(race_api: str) -> None:
    client = ApiClient(race_api)
    files = [("a.jpg", photo(16, 16)), ("b.jpg", photo(16, 16, seed=2))]
    first = client.upload(files, headers={"Idempotency-Key": "replay-gone"})
    assert first.status_code == 202
    replay = client.upload(files, headers={"Idempotency-Key": "replay-gone"})
    assert replay.json() == first.json()  # the same jobs, still queued
    job_ids = [job["id"] for job in first.json()["jobs"]]
    assert client.http.delete(f"/api/v1/jobs/{job_ids[0]}").status_code == 204
    partly = client.upload(files, headers={"Idempotency-Key": "replay-gone"})
    assert partly.status_code == 410, partly.text
    error = partly.json()["error"]
    assert error["code"] == "upload_gone"
    assert error["details"] == {"jobs": 2, "still_stored": 1}
    assert client.http.delete(f"/api/v1/jobs/{job_ids[1]}").status_code == 204
    gone = client.upload(files, headers={"Idempotency-Key": "replay-gone"})
    assert gone.status_code == 410, gone.text
    assert gone.json()["error"]["code"] == "upload_gone"


@dataclass(frozen=True)
class SentFile:
    """A file as the API receives it, for the fingerprint and the job row."""

    index: int
    filename: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def digest(self) -> bytes:
        return hashlib.sha256(self.data).digest()

    @contextlib.contextmanager
    def contents(self) -> Iterator[bytes]:
        yield self.data


def stored_by_the_test(
    client_id: uuid.UUID, filename: str, source: job_store.SourceFile
) -> job_store.NewJob:
    """A 24x24 JPEG to PNG job of the client's, which the test stores itself (not the API)."""
    return job_store.NewJob(
        filename=filename,
        source=source,
        source_format="jpeg",
        source_mime="image/jpeg",
        width=24,
        height=24,
        target_format="png",
        options=ConversionRequest(format=ImageFormat.PNG).job_options(),
        id=new_job_id(LOCAL_SECRET.encode(), client_id),
    )


@pytest.mark.parametrize("first_upload", ["commits", "rolls back"])
def test_the_same_idempotency_key_at_once_stores_one_upload(
    race_stack: Stack, race_api: str, sessions: sessionmaker[Session], first_upload: str
) -> None:
    """The other upload with this key is the test's own, held uncommitted until the API's
    upload waits for it."""
    client = ApiClient(race_api)
    client_id = verify_token(LOCAL_SECRET.encode(), client.token)
    assert client_id is not None
    key = f"same-key-{first_upload}"
    sent = SentFile(0, "a.jpg", photo(24, 24))
    fingerprint = upload_fingerprint(ConversionRequest(format=ImageFormat.PNG), [sent])
    first = stored_by_the_test(client_id, sent.filename, sent)
    with sessions() as tx, tx.begin():
        stored = job_store.insert_jobs(
            tx, PostgresBlobStore(), client_id, [first], (key, fingerprint)
        )
        assert stored is not None
        answer = in_background(
            lambda: client.upload([(sent.filename, sent.data)], {"Idempotency-Key": key})
        )
        wait_until(lambda: lock_waiters(race_stack) >= 1, 20, "the upload never waited")
        if first_upload == "rolls back":
            tx.rollback()
    response = answer()
    assert response.status_code == 202, response.text
    (job,) = response.json()["jobs"]
    if first_upload == "commits":
        assert job["id"] == str(first.id)  # the retry got the first upload's job
    else:
        assert job["id"] != str(first.id)  # the first upload never happened: this one did
    listed = client.http.get("/api/v1/jobs").json()["items"]
    assert [item["id"] for item in listed] == [job["id"]]


def test_a_key_that_expires_while_its_retry_waits_is_upload_gone(
    race_stack: Stack, race_api: str, sessions: sessionmaker[Session]
) -> None:
    """The other upload with this key commits, and retention removes the key before the API's
    upload reads it back: the test's second transaction holds the keys table until then."""
    client = ApiClient(race_api)
    client_id = verify_token(LOCAL_SECRET.encode(), client.token)
    assert client_id is not None
    key = "expires-at-once"
    sent = SentFile(0, "a.jpg", photo(24, 24))
    request = ConversionRequest(format=ImageFormat.PNG)
    first = stored_by_the_test(client_id, sent.filename, sent)
    url = race_stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as retention:
        with sessions() as tx, tx.begin():
            stored = job_store.insert_jobs(
                tx,
                PostgresBlobStore(),
                client_id,
                [first],
                (key, upload_fingerprint(request, [sent])),
            )
            assert stored is not None
            answer = in_background(
                lambda: client.upload([(sent.filename, sent.data)], {"Idempotency-Key": key})
            )
            wait_until(lambda: lock_waiters(race_stack) >= 1, 20, "the upload never waited")
            # Queued now, so the API's read back waits behind it once this transaction ends.
            locked = in_background(
                lambda: retention.execute("LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE")
            )
            wait_until(lambda: lock_waiters(race_stack) >= 2, 20, "the lock was not queued")
        locked()
        wait_until(lambda: lock_waiters(race_stack) >= 1, 20, "the read back never waited")
        retention.execute("DELETE FROM idempotency_keys WHERE key = %s", (key,))
        retention.commit()
    response = answer()
    assert response.status_code == 410, response.text
    assert response.json()["error"]["code"] == "upload_gone"


WAITING_UPLOADS = 45  # more than AnyIO's 40 pool threads


def test_uploads_waiting_to_be_stored_hold_no_thread(
    race_stack: Stack, sessions: sessionmaker[Session]
) -> None:
    """One upload holds all the storing room (its INSERT waits for the test's uncommitted upload
    with the same key); many more wait for room; a token and a job list are still answered."""
    proc, url = start_api(race_stack, IMGCONV_UPLOAD_MEMORY_BYTES=str(4 * 1024 * 1024))
    try:
        client = ApiClient(url)
        client_id = verify_token(LOCAL_SECRET.encode(), client.token)
        assert client_id is not None
        key = "holds-the-storing-room"
        sent = SentFile(0, "big.bmp", bmp_of_about(2 * 1024 * 1024))  # spills to disk
        request = ConversionRequest(format=ImageFormat.PNG)
        other = stored_by_the_test(client_id, sent.filename, SentFile(0, "o.jpg", photo(24, 24)))
        with sessions() as tx, tx.begin():
            fingerprint = upload_fingerprint(request, [sent])
            stored = job_store.insert_jobs(
                tx, PostgresBlobStore(), client_id, [other], (key, fingerprint)
            )
            assert stored is not None
            holder = in_background(
                lambda: client.upload([(sent.filename, sent.data)], {"Idempotency-Key": key})
            )
            wait_until(lambda: lock_waiters(race_stack) >= 1, 30, "the upload never waited")
            waiting = [
                in_background(
                    lambda: ApiClient(url, client.token).upload([("w.png", b"w" * 1_200_000)])
                )
                for _ in range(WAITING_UPLOADS)
            ]
            everything = len(sent.data) + WAITING_UPLOADS * 1_200_000
            wait_until(lambda: bytes_held(url) >= everything, 60, "the uploads did not arrive")
            # A pool thread each: a hang here would mean the waiting uploads hold them all.
            answered = httpx.post(f"{url}/api/v1/tokens", timeout=20)
            assert answered.status_code == 201, answered.text
            listed = client.http.get("/api/v1/jobs", timeout=20)
            assert listed.status_code == 200, listed.text
            tx.rollback()
        assert holder().status_code == 202
        statuses = {answer().status_code for answer in waiting}
        assert statuses <= {415, 503}, statuses  # not images; or waited too long
    finally:
        proc.stop()
