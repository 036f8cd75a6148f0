"""Periodic housekeeping that keeps the promise "every accepted job reaches a terminal state".

Runs in the API processes (always up, unlike workers that may be scaled to zero); a Postgres
advisory lock lets one replica at a time do a pass. Each pass:
- re-queues jobs whose worker vanished (lease over), or fails them after too many attempts;
- deletes jobs past the retention period, with their images (those in a store that is down
  wait for it; the rest of the pass goes on);
- deletes objects in the S3 bucket that no job needs, after a grace period (storage/orphans.py);
- rewrites the status cache for jobs changed since the last good pass (heals missed writes);
- publishes queued jobs the broker never confirmed (the outbox), e.g. after a broker outage;
- re-publishes queued jobs whose messages the broker lost (its queue is empty, yet they wait).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from imgconv_core import status_cache
from imgconv_core.db.job_store import cache_entry, jobs_changed_since, mark_enqueued
from imgconv_core.db.session import transaction
from imgconv_core.errors import StorageUnavailable
from imgconv_core.outages import log_failure
from imgconv_core.processing import (
    expire_jobs,
    orphaned_jobs,
    requeue_expired,
    unpublished_jobs,
)
from imgconv_core.settings import Settings, StorageBackend
from imgconv_core.storage import BlobStores
from imgconv_core.storage.orphans import job_states, orphaned_keys
from imgconv_core.telemetry.metrics import observe_terminal

log = logging.getLogger(__name__)

SWEEP_LOCK = 7312002
EXPIRE_BATCH = 500  # jobs deleted per transaction
HEAL_BATCH = 5000  # jobs re-cached per pass at most; a pass with more goes on in the next
ORPHAN_PAGE = 1000  # bucket keys looked at per listing (S3's largest page)

Publisher = Callable[[Sequence[uuid.UUID]], list[uuid.UUID]]


@dataclass
class SweepReport:
    requeued: int = 0
    failed: int = 0
    expired: int = 0
    recached: int = 0
    republished: int = 0
    orphans_deleted: int = 0


@dataclass
class Sweeper:
    """One housekeeping loop; `run_once` is a single pass (tests call it directly)."""

    settings: Settings
    sessions: sessionmaker[Session]
    stores: BlobStores
    redis: redis.Redis
    publish: Publisher
    queue_depth: Callable[[], int] | None = None
    heal_batch: int = HEAL_BATCH
    expire_batch: int = EXPIRE_BATCH
    cache_ok_since: datetime | None = None
    heal_after: uuid.UUID | None = None
    orphan_cursor: str | None = None  # the last bucket key looked at; None: from the start
    _stop: threading.Event = field(default_factory=threading.Event)

    def run_once(self) -> SweepReport | None:
        """One pass, or None if another process holds the sweep lock."""
        with self.sessions() as lock_session:
            if not lock_session.scalar(select(func.pg_try_advisory_lock(SWEEP_LOCK))):
                return None
            try:
                return self._pass()
            finally:
                lock_session.scalar(select(func.pg_advisory_unlock(SWEEP_LOCK)))
                lock_session.commit()

    def _pass(self) -> SweepReport:
        report = SweepReport()
        settings = self.settings
        with transaction(self.sessions) as tx:
            now = tx.scalar(select(func.now()))
            assert now is not None
            requeued, failed = requeue_expired(tx, max_attempts=settings.max_attempts)
            since = self.cache_ok_since or now - timedelta(
                seconds=3 * settings.sweep_interval_seconds
            )
            changed = jobs_changed_since(tx, since, after=self.heal_after, limit=self.heal_batch)
        for job in failed:
            observe_terminal(job, by_worker=False)
        expired = self._expire()
        report.requeued, report.failed, report.expired = len(requeued), len(failed), len(expired)
        try:
            status_cache.write_entries(
                self.redis,
                [(job.id, cache_entry(job), job.version) for job in changed],
                settings.status_cache_ttl_seconds,
            )
            # After the writes: a deleted job stays gone.
            status_cache.forget_jobs(self.redis, expired, settings.status_cache_ttl_seconds)
            report.recached = len(changed)
            if len(changed) == self.heal_batch:
                # More changed than one pass heals: the next pass goes on after the last one.
                self.cache_ok_since, self.heal_after = changed[-1].updated_at, changed[-1].id
            else:
                # Next pass starts a little before this one, so nothing slips between the two.
                self.cache_ok_since = now - timedelta(seconds=settings.sweep_interval_seconds)
                self.heal_after = None
        except redis.RedisError as exc:
            log.warning("status cache unavailable during sweep: %s", exc)
        report.orphans_deleted = self._delete_orphans()
        with transaction(self.sessions) as tx:
            pending = unpublished_jobs(tx, older_than=settings.publish_grace_seconds)
        pending += self._lost_messages()
        if pending:
            published = self.publish(pending)
            if published:
                with transaction(self.sessions) as tx:
                    mark_enqueued(tx, published, again=True)
            report.republished = len(published)
        return report

    def _expire(self) -> list[uuid.UUID]:
        """Delete jobs past retention in batches (one transaction each) until none is left or
        half a sweep interval is used, so deletion keeps up with any sustained upload rate.
        Jobs in a store that is down are skipped for the rest of the pass (their rows stay, so
        the next pass deletes their images), so an S3 outage holds up only S3 jobs."""
        retention = timedelta(days=self.settings.retention_days)
        budget_ends = time.monotonic() + self.settings.sweep_interval_seconds / 2
        expired: list[uuid.UUID] = []
        down: set[StorageBackend] = set()
        while True:
            with transaction(self.sessions) as tx:
                batch = expire_jobs(
                    tx, self.stores, retention=retention, limit=self.expire_batch, skip=down
                )
            expired += batch.deleted
            if batch.unreachable:
                log.warning(
                    "retention skips jobs in %s until it answers",
                    ", ".join(sorted(batch.unreachable)),
                )
                down |= batch.unreachable
            elif batch.looked_at < self.expire_batch:
                return expired
            if time.monotonic() >= budget_ends:
                return expired

    def _delete_orphans(self) -> int:
        """Delete bucket objects no job needs, a page of keys at a time from where the last
        pass stopped, for up to a quarter of a sweep interval (S3 deployments only)."""
        if self.settings.storage is not StorageBackend.S3:
            return 0
        from imgconv_core.storage.s3 import S3BlobStore

        store = self.stores.of(StorageBackend.S3)
        assert isinstance(store, S3BlobStore)
        budget_ends = time.monotonic() + self.settings.sweep_interval_seconds / 4
        deleted = 0
        try:
            while True:
                page = store.list_after(self.orphan_cursor, ORPHAN_PAGE)
                grace = timedelta(seconds=self.settings.s3_orphan_grace_seconds)
                with transaction(self.sessions) as tx:
                    jobs = job_states(tx, (key for key, _ in page))
                    orphans = orphaned_keys(page, jobs, datetime.now(UTC) - grace)
                    store.delete(tx, orphans)
                deleted += len(orphans)
                # A short page is the end of the bucket: the next pass starts over.
                self.orphan_cursor = page[-1][0] if len(page) == ORPHAN_PAGE else None
                if self.orphan_cursor is None or time.monotonic() >= budget_ends:
                    return deleted
        except StorageUnavailable:
            log.warning("orphan sweep skipped: the image store is unreachable")
            return deleted

    def _lost_messages(self) -> list[uuid.UUID]:
        """Queued jobs whose messages are gone: only looked for while the queue is empty."""
        if self.queue_depth is None:
            return []
        try:
            if self.queue_depth() != 0:
                return []
        except Exception as exc:  # broker unreachable: nothing can be published anyway
            log.debug("queue depth unavailable: %s", exc)
            return []
        with transaction(self.sessions) as tx:
            return orphaned_jobs(tx, enqueued_before=self.settings.orphan_after_seconds)

    def run_forever(self) -> None:
        """Sweep every `sweep_interval_seconds` until `stop()`; errors are logged, not fatal."""
        while not self._stop.wait(self.settings.sweep_interval_seconds):
            try:
                report = self.run_once()
                if report and any(vars(report).values()):
                    log.info("sweep: %s", report)
            except Exception as exc:
                log_failure(log, "sweep skipped; retrying next interval", exc)

    def stop(self) -> None:
        """Make `run_forever` return after the current pass."""
        self._stop.set()
