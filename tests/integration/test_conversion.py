"""`run_conversion` against the real Postgres and Redis: what ends a job, and with which code."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest
import redis

from imgconv_core import conversion, status_cache
from imgconv_core.conversion import Outcome, WorkerContext, run_conversion
from imgconv_core.db import job_store
from imgconv_core.db.models import Job
from imgconv_core.db.session import make_engine, make_session_factory, transaction
from imgconv_core.settings import Settings
from imgconv_core.storage import PostgresBlobStore
from imgconv_core.tokens import issue_token
from tests.support.client import ApiClient
from tests.support.images import photo
from tests.support.services import Stack, running, start_api, start_worker


class Interrupted(Exception):
    """Stands in for the worker's soft time limit, raised into the conversion."""


@pytest.fixture
def ctx(private_stack: Stack) -> Iterator[WorkerContext]:
    # A stack of its own: no API's sweeper publishes these jobs to a worker meanwhile.
    settings = Settings(
        mode="local", database_url=private_stack.database_url, redis_url=private_stack.redis_url
    )
    engine = make_engine(settings, pool_size=2)
    client = redis.Redis.from_url(settings.redis_url)
    yield WorkerContext(
        settings,
        make_session_factory(engine),
        PostgresBlobStore(),
        client,
        interruptions=(Interrupted,),
    )
    client.close()
    engine.dispose()


def new_job(ctx: WorkerContext, data: bytes) -> uuid.UUID:
    issued = issue_token(b"k" * 32)
    job = job_store.NewJob(
        id=uuid.uuid4(),
        filename="a.png",
        data=data,
        source_format="png",
        source_mime="image/png",
        width=16,
        height=16,
        target_format="jpeg",
        options={},
    )
    with transaction(ctx.sessions) as tx:
        job_store.create_client(tx, issued)
    with transaction(ctx.sessions) as tx:
        return job_store.insert_jobs(tx, ctx.store, issued.client_id, [job])[0].id


def row(ctx: WorkerContext, job_id: uuid.UUID) -> Job:
    with ctx.sessions() as tx:
        job = tx.get(Job, job_id)
        assert job is not None
        return job


def cached_status(ctx: WorkerContext, job_id: uuid.UUID) -> dict[str, object]:
    raw = ctx.redis.get(status_cache.job_key(job_id))
    assert isinstance(raw, bytes)
    entry = status_cache.decode_entry(raw)
    assert entry is not None
    body: dict[str, object] = json.loads(entry.body)
    return body


def test_a_damaged_image_ends_failed_decode_failed(ctx: WorkerContext) -> None:
    data = photo(16, 16, "PNG")
    job_id = new_job(ctx, data[: len(data) // 2])
    report = run_conversion(ctx, job_id)
    assert (report.outcome, report.error_code) == (Outcome.FAILED, "decode_failed")
    assert row(ctx, job_id).status == "failed"


def test_a_bug_fails_the_job_at_once_as_internal_with_its_traceback_logged(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> None:
        raise TypeError("a bug of ours")

    monkeypatch.setattr(conversion, "convert_image", broken)
    job_id = new_job(ctx, photo(16, 16, "PNG"))
    with caplog.at_level(logging.ERROR, logger="imgconv_core.conversion"):
        report = run_conversion(ctx, job_id)
    assert (report.outcome, report.error_code) == (Outcome.FAILED, "internal_error")
    job = row(ctx, job_id)
    assert (job.status, job.error_code, job.attempts) == ("failed", "internal_error", 1)
    assert job.error_message is not None
    assert "corrupt" not in job.error_message
    assert cached_status(ctx, job_id)["status"] == "failed"  # pollers are told at once
    tracebacks = [r.exc_info for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    assert isinstance(tracebacks[0][1], TypeError)
    # A redelivered message finds the job finished: the bug is not retried.
    assert run_conversion(ctx, job_id).outcome is Outcome.DROPPED


def test_an_interruption_from_outside_is_not_taken_for_a_failure(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: object) -> None:
        raise Interrupted

    monkeypatch.setattr(conversion, "convert_image", interrupted)
    job_id = new_job(ctx, photo(16, 16, "PNG"))
    with pytest.raises(Interrupted):
        run_conversion(ctx, job_id)
    job = row(ctx, job_id)
    # Still claimed: the worker's adapter decides (timed_out), not run_conversion.
    assert (job.status, job.error_code) == ("processing", None)


def test_the_soft_time_limit_ends_a_real_workers_job_timed_out(private_stack: Stack) -> None:
    # Through Celery: the worker declares its soft time limit as an interruption, so the
    # conversion does not report it as an internal error.
    private_stack.overrides["IMGCONV_TASK_SOFT_TIME_LIMIT"] = "1"
    api_proc, url = start_api(private_stack)
    with running(api_proc), running(start_worker(private_stack)):
        client = ApiClient(url)
        # 3 MP to AVIF takes several seconds here.
        job = client.upload_ok([("slow.jpg", photo(2000, 1500))], format="avif")[0]
        done = client.wait_terminal(job["id"], timeout=120)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "timed_out"
