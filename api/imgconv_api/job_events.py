"""Wakes long polls when a job changes: one Redis pub/sub subscription per API process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from imgconv_core.status_cache import JOB_EVENTS_CHANNEL

log = logging.getLogger(__name__)


class JobEventHub:
    """Fan-out of `imgconv:job-events` to waiting requests. While Redis is unreachable,
    `healthy` is False and long polls fall back to re-reading Postgres periodically."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.healthy = False

    def start(self) -> None:
        """Start listening in the background."""
        self._task = asyncio.create_task(self._listen(), name="job-events")

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set when `job_id` changes; register before reading to miss nothing."""
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    def _notify(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    def _notify_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(JOB_EVENTS_CHANNEL)
                self.healthy = True
                backoff = 0.2
                # Events published while we were away are lost: let every waiter re-read.
                self._notify_all()
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        self._notify(data.decode())
            except (RedisError, OSError) as exc:
                if self.healthy:
                    log.warning("job events unavailable, long polls fall back to polling: %s", exc)
                self.healthy = False
                self._notify_all()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
