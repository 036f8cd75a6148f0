"""The outbox (relay and sweeper) and the claim protocol against the real Postgres, Redis and
RabbitMQ."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from imgconv_api.outbox_relay import OutboxRelay
from imgconv_api.publisher import CeleryPublisher
from imgconv_core import status_cache
from imgconv_core.db import job_store
from imgconv_core.db.models import Blob, IdempotencyKey, Job
from imgconv_core.db.session import make_engine, make_session_factory, transaction
from imgconv_core.jobs import JobStatus
from imgconv_core.processing import ClaimOutcome, claim_job, current_claimant
from imgconv_core.settings import Settings
from imgconv_core.storage import BlobStore, PostgresBlobStore, make_stores
from imgconv_core.sweeper import Sweeper
from imgconv_core.tokens import issue_token
from tests.support.images import photo
from tests.support.seaweedfs import seaweedfs
from tests.support.services import Stack, amqp_url, free_port, wait_until


@dataclass
class Env:
    settings: Settings
    sessions: sessionmaker[Session]
    redis: redis.Redis
    publisher: CeleryPublisher
    sweeper: Sweeper
    client_id: uuid.UUID
    vhost: str


@pytest.fixture
def env(private_stack: Stack) -> Iterator[Env]:
    settings = Settings(
        mode="local",
        database_url=private_stack.database_url,
        redis_url=private_stack.redis_url,
        broker_url=amqp_url(private_stack.vhost),
        max_attempts=2,
        publish_grace_seconds=0,
        sweep_interval_seconds=1,
    )
    engine = make_engine(settings, pool_size=2)
    sessions = make_session_factory(engine)
    client = redis.Redis.from_url(settings.redis_url)
    publisher = CeleryPublisher(settings)
    sweeper = Sweeper(settings, sessions, make_stores(settings), client, publisher.publish)
    issued = issue_token(b"k" * 32)
    with transaction(sessions) as tx:
        job_store.create_client(tx, issued)
    yield Env(settings, sessions, client, publisher, sweeper, issued.client_id, private_stack.vhost)
    publisher.close()
    engine.dispose()


def new_job(env: Env, store: BlobStore | None = None) -> job_store.JobRow:
    new = job_store.NewJob(
        id=uuid.uuid4(),
        filename="a.jpg",
        source=job_store.BytesSource(photo(16, 16)),
        source_format="jpeg",
        source_mime="image/jpeg",
        width=16,
        height=16,
        target_format="png",
        options={},
    )
    with transaction(env.sessions) as tx:
        stored = job_store.insert_jobs(tx, store or PostgresBlobStore(), env.client_id, [new])
    assert stored is not None
    return stored[0]


def load(env: Env, job_id: uuid.UUID) -> Job | None:
    with env.sessions() as tx:
        return tx.get(Job, job_id)


def test_outbox_publishes_jobs_the_broker_never_got(env: Env) -> None:
    job = new_job(env)
    report = env.sweeper.run_once()
    assert report is not None
    assert report.republished == 1
    assert env.publisher.queue_depth()[0] == 1  # a private vhost: our message only
    row = load(env, job.id)
    assert row is not None
    assert row.enqueued_at is not None
    again = env.sweeper.run_once()
    assert again is not None
    assert again.republished == 0  # published once, not on every pass


def enqueued(env: Env, job_ids: list[uuid.UUID]) -> bool:
    with env.sessions() as tx:
        marks = tx.scalars(select(Job.enqueued_at).where(Job.id.in_(job_ids))).all()
    return len(marks) == len(job_ids) and all(mark is not None for mark in marks)


def test_relay_publishes_committed_jobs_and_marks_them_in_one_batch(env: Env) -> None:
    jobs = [new_job(env).id for _ in range(3)]
    relay = OutboxRelay(env.sessions, env.publisher.publish)
    relay.start()
    try:
        relay.add(jobs[:1])
        relay.add(jobs[1:])
        wait_until(lambda: enqueued(env, jobs), 10, "the relay did not mark the jobs")
    finally:
        relay.close()
    assert env.publisher.queue_depth()[0] == 3
    report = env.sweeper.run_once()
    assert report is not None
    assert report.republished == 0  # marked: the sweeper leaves them alone


def publish_failures() -> float:
    return REGISTRY.get_sample_value("imgconv_api_publish_failures_total") or 0.0


def test_relay_leaves_jobs_to_the_sweeper_when_the_broker_is_down(env: Env) -> None:
    job = new_job(env).id
    down = CeleryPublisher(
        env.settings.model_copy(update={"broker_url": amqp_url(env.vhost, free_port())})
    )
    failures = publish_failures()
    relay = OutboxRelay(env.sessions, down.publish)
    relay.start()
    relay.add([job])
    relay.close()
    down.close()
    assert publish_failures() == failures + 1
    assert not enqueued(env, [job])
    report = env.sweeper.run_once()
    assert report is not None
    assert report.republished == 1
    assert enqueued(env, [job])


def test_relay_marks_what_it_published_before_it_stops(env: Env) -> None:
    job = new_job(env).id
    relay = OutboxRelay(env.sessions, env.publisher.publish)
    relay.start()
    relay.add([job])
    relay.close()  # well inside the marking window
    assert enqueued(env, [job])


def cached(env: Env, job_id: uuid.UUID) -> status_cache.CachedJob | None:
    raw = env.redis.get(status_cache.job_key(job_id))
    assert isinstance(raw, bytes)
    return status_cache.decode_entry(raw)


def expire_lease(env: Env, job_id: uuid.UUID, attempts: int) -> None:
    with transaction(env.sessions) as tx:
        tx.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status=JobStatus.PROCESSING.value,
                claimed_by="gone-host:1",
                attempts=attempts,
                enqueued_at=func.now(),
                lease_expires_at=func.now() - timedelta(seconds=1),
            )
        )


def test_job_of_a_vanished_worker_is_requeued_then_failed(env: Env) -> None:
    job = new_job(env)
    expire_lease(env, job.id, attempts=1)
    report = env.sweeper.run_once()
    assert report is not None
    assert report.requeued == 1
    row = load(env, job.id)
    assert row is not None
    assert row.status == "queued"
    assert row.enqueued_at is not None  # re-published in the same pass
    expire_lease(env, job.id, attempts=2)
    report = env.sweeper.run_once()
    assert report is not None
    assert report.failed == 1
    row = load(env, job.id)
    assert row is not None
    assert row.status == "failed"
    assert row.error_code == "worker_lost"
    entry = cached(env, job.id)
    assert entry is not None
    assert b'"failed"' in entry.body  # the cache learned it too


def past_retention(env: Env, job_ids: list[uuid.UUID]) -> None:
    """Make jobs older than the 7-day retention."""
    with transaction(env.sessions) as tx:
        tx.execute(
            update(Job).where(Job.id.in_(job_ids)).values(created_at=func.now() - timedelta(days=8))
        )


def cache_stale(env: Env, job: job_store.JobRow) -> None:
    """Put an older status of `job` in the cache (version 0, `processing`)."""
    stale = job_store.job_view(job).model_copy(update={"status": JobStatus.PROCESSING})
    env.redis.set(status_cache.job_key(job.id), status_cache.encode_entry(env.client_id, stale, 0))


def test_retention_deletes_old_jobs_with_their_images(env: Env) -> None:
    old, fresh = new_job(env), new_job(env)
    past_retention(env, [old.id])
    env.sweeper.run_once()
    assert load(env, old.id) is None
    assert load(env, fresh.id) is not None
    with env.sessions() as tx:
        keys = set(tx.scalars(select(Blob.key)).all())
    assert f"{old.id}/source" not in keys
    assert f"{fresh.id}/source" in keys
    assert env.redis.get(status_cache.job_key(old.id)) == status_cache.DELETED


def keyed_job(env: Env, key: str) -> uuid.UUID:
    new = job_store.NewJob(
        id=uuid.uuid4(),
        filename="a.jpg",
        source=job_store.BytesSource(photo(16, 16)),
        source_format="jpeg",
        source_mime="image/jpeg",
        width=16,
        height=16,
        target_format="png",
        options={},
    )
    with transaction(env.sessions) as tx:
        assert job_store.insert_jobs(tx, PostgresBlobStore(), env.client_id, [new], (key, "f" * 64))
    return new.id


def test_idempotency_keys_expire_with_their_jobs(env: Env) -> None:
    old, fresh = keyed_job(env, "old-key"), keyed_job(env, "fresh-key")
    past_retention(env, [old])
    with transaction(env.sessions) as tx:
        tx.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "old-key")
            .values(created_at=func.now() - timedelta(days=8))
        )
    env.sweeper.run_once()
    with env.sessions() as tx:
        keys = tx.scalars(select(IdempotencyKey.key)).all()
        assert keys == ["fresh-key"]  # a retry with the old key is now a new upload
        assert tx.get(Job, fresh) is not None


def test_retention_keeps_up_with_more_than_one_batch_per_pass(env: Env) -> None:
    old = [new_job(env).id for _ in range(5)]
    past_retention(env, old)
    env.sweeper.expire_batch = 2
    report = env.sweeper.run_once()
    assert report is not None
    assert report.expired == 5  # three batches in one pass, not two jobs per pass
    assert all(load(env, job_id) is None for job_id in old)


def test_sweeper_heals_a_stale_cache_entry(env: Env) -> None:
    job = new_job(env)
    cache_stale(env, job)
    with transaction(env.sessions) as tx:
        tx.execute(update(Job).where(Job.id == job.id).values(updated_at=func.now()))
    env.sweeper.run_once()
    entry = cached(env, job.id)
    assert entry is not None
    assert entry.version == job.version
    assert b'"queued"' in entry.body


def test_healing_more_jobs_than_one_pass_takes_goes_on_in_the_next(env: Env) -> None:
    jobs = [new_job(env) for _ in range(5)]
    for job in jobs:
        cache_stale(env, job)
    with transaction(env.sessions) as tx:  # one statement: all five share one updated_at
        tx.execute(
            update(Job).where(Job.id.in_([j.id for j in jobs])).values(updated_at=func.now())
        )
    env.sweeper.heal_batch = 2
    healed = []
    for _ in range(3):
        report = env.sweeper.run_once()
        assert report is not None
        healed.append(report.recached)
    assert healed[:2] == [2, 2]  # two full batches, then the rest
    for job in jobs:
        entry = cached(env, job.id)
        assert entry is not None
        assert entry.version == job.version


def test_only_one_sweeper_runs_at_a_time(env: Env) -> None:
    with env.sessions() as holder:
        assert holder.scalar(select(func.pg_try_advisory_lock(7312002)))
        assert env.sweeper.run_once() is None
        holder.scalar(select(func.pg_advisory_unlock(7312002)))
    assert env.sweeper.run_once() is not None


def claim(env: Env, job_id: uuid.UUID, me: str) -> ClaimOutcome:
    with transaction(env.sessions) as tx:
        return claim_job(tx, job_id, me, lease=60, max_attempts=3).outcome


def test_claims_are_exclusive_until_the_holder_is_provably_gone(env: Env) -> None:
    job = new_job(env)
    assert claim(env, job.id, "other-host:123") is ClaimOutcome.CLAIMED
    # Another host's live lease: a duplicate waits.
    assert claim(env, job.id, current_claimant()) is ClaimOutcome.BUSY
    # A holder on this host whose process is dead: taken over at once.
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = current_claimant().rpartition(":")[0]
    with transaction(env.sessions) as tx:
        tx.execute(update(Job).where(Job.id == job.id).values(claimed_by=f"{host}:{dead.pid}"))
    assert claim(env, job.id, current_claimant()) is ClaimOutcome.CLAIMED
    row = load(env, job.id)
    assert row is not None
    assert row.attempts == 2
    # Finished jobs are never claimed again.
    with transaction(env.sessions) as tx:
        tx.execute(update(Job).where(Job.id == job.id).values(status="completed"))
    assert claim(env, job.id, current_claimant()) is ClaimOutcome.GONE
    assert claim(env, uuid.uuid4(), current_claimant()) is ClaimOutcome.GONE


def test_a_zombie_holder_counts_as_dead(env: Env) -> None:
    """A SIGKILLed worker child whose parent died too stays a zombie until reaped."""
    job = new_job(env)
    zombie = subprocess.Popen(["true"])
    wait_until(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().split()[2] == "Z", 10, "")
    host = current_claimant().rpartition(":")[0]
    assert claim(env, job.id, "other-host:1") is ClaimOutcome.CLAIMED
    with transaction(env.sessions) as tx:
        tx.execute(update(Job).where(Job.id == job.id).values(claimed_by=f"{host}:{zombie.pid}"))
    assert claim(env, job.id, current_claimant()) is ClaimOutcome.CLAIMED
    zombie.wait()


def test_jobs_whose_messages_the_broker_lost_are_published_again(env: Env) -> None:
    env.sweeper.queue_depth = lambda: env.publisher.queue_depth()[0]
    env.settings.orphan_after_seconds = 0.5
    job = new_job(env)
    report = env.sweeper.run_once()
    assert report is not None
    assert report.republished == 1  # the outbox
    # While the message waits in the queue, nothing is published twice.
    time.sleep(0.6)
    report = env.sweeper.run_once()
    assert report is not None
    assert report.republished == 0
    # The queue loses it (purged / broker reset): the job is published again.
    subprocess.run(["rabbitmqctl", "-q", "purge_queue", "-p", env.vhost, "conversions"], check=True)
    assert env.publisher.queue_depth()[0] == 0
    report = env.sweeper.run_once()
    assert report is not None
    assert report.republished == 1
    assert env.publisher.queue_depth()[0] == 1
    row = load(env, job.id)
    assert row is not None
    assert row.status == "queued"


def test_an_s3_outage_skips_only_the_s3_deletes_of_a_sweep_pass(env: Env, log_dir: Path) -> None:
    """Expired S3 jobs wait for the store; the rest of the pass (Postgres jobs' retention, the
    outbox) goes on, and the S3 jobs go once the store is back."""
    with seaweedfs(log_dir) as weed:
        settings = env.settings.model_copy(
            update=weed.settings().model_dump(include={*S3_FIELDS}) | {"s3_max_retries": 0}
        )
        stores = make_stores(settings)
        sweeper = Sweeper(settings, env.sessions, stores, env.redis, env.publisher.publish)
        in_s3, in_postgres = new_job(env, stores.current), new_job(env)
        past_retention(env, [in_s3.id, in_postgres.id])
        with transaction(env.sessions) as tx:  # both expired jobs were published long ago
            tx.execute(
                update(Job)
                .where(Job.id.in_([in_s3.id, in_postgres.id]))
                .values(enqueued_at=func.now())
            )
        unpublished = new_job(env)
        assert sorted(weed.object_keys()) == [f"{in_s3.id}/source"]
        with weed.down():
            report = sweeper.run_once()
            assert report is not None
            assert report.republished == 1
            assert env.publisher.queue_depth()[0] == 1
            assert enqueued(env, [unpublished.id])
            assert load(env, in_postgres.id) is None
            assert load(env, in_s3.id) is not None  # kept, so its objects are deleted later
        report = sweeper.run_once()
        assert report is not None
        assert report.expired == 1
        assert load(env, in_s3.id) is None
        assert weed.object_keys() == []


S3_FIELDS = (
    "storage",
    "s3_endpoint_url",
    "s3_bucket",
    "s3_region",
    "s3_path_style",
    "s3_prefix",
    "s3_access_key_id",
    "s3_secret_access_key",
)


def test_a_database_outage_is_one_warning_per_pass_not_a_traceback(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """The sweeper keeps running through the outage and says what is down in one line; the
    relay, unable to mark what it published, says so the same way."""
    gone = env.settings.model_copy(
        update={"database_url": f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/imgconv"}
    )
    engine = make_engine(gone, pool_size=1)
    sessions = make_session_factory(engine)
    sweeper = Sweeper(gone, sessions, make_stores(gone), env.redis, env.publisher.publish)
    caplog.set_level(logging.WARNING)
    passes = threading.Thread(target=sweeper.run_forever)
    passes.start()
    try:
        wait_until(
            lambda: sum("sweep skipped" in r.getMessage() for r in caplog.records) >= 2,
            15,
            "the sweeper did not report two skipped passes",
        )
    finally:
        sweeper.stop()
        passes.join(10)
    assert not passes.is_alive()
    relay = OutboxRelay(sessions, env.publisher.publish)
    relay.start()
    relay.add([uuid.uuid4()])
    relay.close()
    engine.dispose()
    ours = [r for r in caplog.records if r.name.startswith(("imgconv_core", "imgconv_api"))]
    assert {r.levelno for r in ours} == {logging.WARNING}
    assert not any(r.exc_info for r in ours), [r.getMessage() for r in ours]
    marked = [r.getMessage() for r in ours if "could not mark" in r.getMessage()]
    assert len(marked) == 1
    assert "(database unavailable: " in marked[0]
    skipped = [r.getMessage() for r in ours if "sweep skipped" in r.getMessage()]
    assert all("database unavailable: " in m and "\n" not in m for m in skipped)
