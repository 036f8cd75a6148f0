"""Marks published jobs as enqueued in batches, off the upload's critical path.

The mark only tells the sweeper not to publish a job again; if it is lost (crash, database
hiccup) the sweeper re-publishes and the worker's claim drops the duplicate. So uploads answer
as soon as the broker confirmed, and one UPDATE covers every job published in a short window.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from imgconv_core.db.job_store import mark_enqueued
from imgconv_core.db.session import transaction

log = logging.getLogger(__name__)

BATCH_WINDOW = 0.05


class EnqueueMarker:
    """A background thread that records broker confirmations in batches."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._queue: queue.SimpleQueue[Sequence[uuid.UUID] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="enqueue-marker", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def add(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Queue ids whose messages the broker confirmed (never blocks)."""
        if job_ids:
            self._queue.put(job_ids)

    def close(self, timeout: float = 5) -> None:
        """Write what is pending, then stop."""
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = list(first)
            deadline = time.monotonic() + BATCH_WINDOW
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    more = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.extend(more)
            try:
                with transaction(self._sessions) as tx:
                    mark_enqueued(tx, batch)
            except Exception:
                log.warning(
                    "could not mark %d job(s) enqueued; the sweeper will re-publish them",
                    len(batch),
                    exc_info=True,
                )
