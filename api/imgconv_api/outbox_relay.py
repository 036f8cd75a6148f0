"""Publishes committed uploads to the broker and marks them enqueued, off the request path.

An upload answers 202 as soon as its rows are committed: the rows are the outbox. This thread
then publishes their messages (one producer per batch) and records the broker's confirmation
in batched UPDATEs. Nothing depends on it for correctness: a job it did not publish (broker
down, process killed) or did not mark is published again by the sweeper, and the worker's
claim drops a duplicate message.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from imgconv_api import metrics
from imgconv_core.db.job_store import mark_enqueued
from imgconv_core.db.session import transaction
from imgconv_core.outages import log_failure

log = logging.getLogger(__name__)

# How long confirmed ids may wait to be marked, so one UPDATE covers many uploads.
MARK_WINDOW = 0.2

Publish = Callable[[Sequence[uuid.UUID]], list[uuid.UUID]]


class OutboxRelay:
    """A background thread: publish committed jobs, then mark them enqueued in batches."""

    def __init__(self, sessions: sessionmaker[Session], publish: Publish) -> None:
        self._sessions = sessions
        self._publish = publish
        self._queue: queue.SimpleQueue[Sequence[uuid.UUID] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def add(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Hand over ids of committed jobs to publish (never blocks)."""
        if job_ids:
            self._queue.put(job_ids)

    def close(self, timeout: float = 5) -> None:
        """Publish and mark what is pending, then stop."""
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        unmarked: list[uuid.UUID] = []
        mark_by = 0.0
        stopping = False
        while not stopping:
            wait = max(0.0, mark_by - time.monotonic()) if unmarked else None
            batch, stopping = self._take(wait)
            if batch:
                if not unmarked:
                    mark_by = time.monotonic() + MARK_WINDOW
                unmarked += self._publish_batch(batch)
            if unmarked and (stopping or time.monotonic() >= mark_by):
                self._mark(unmarked)
                unmarked = []

    def _take(self, wait: float | None) -> tuple[list[uuid.UUID], bool]:
        """Everything queued, waiting up to `wait` seconds for the first ids (None: for ever),
        and whether `close()` was called."""
        batch: list[uuid.UUID] = []
        try:
            item = self._queue.get(timeout=wait)
            while item is not None:
                batch.extend(item)
                item = self._queue.get_nowait()
        except queue.Empty:
            return batch, False
        return batch, True

    def _publish_batch(self, batch: list[uuid.UUID]) -> list[uuid.UUID]:
        try:
            sent = self._publish(batch)
        except Exception as exc:
            log_failure(log, f"publishing {len(batch)} job(s) failed; the sweeper will", exc)
            sent = []
        metrics.PUBLISH_FAILURES.inc(len(batch) - len(sent))
        return sent

    def _mark(self, job_ids: list[uuid.UUID]) -> None:
        try:
            with transaction(self._sessions) as tx:
                mark_enqueued(tx, job_ids)
        except Exception as exc:
            what = f"could not mark {len(job_ids)} job(s) enqueued"
            log_failure(log, f"{what}; the sweeper will re-publish them", exc)
