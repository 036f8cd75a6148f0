"""Drain chosen worker pods before a scale-down, with the workers' own help (Celery remote control).

Broker statistics lag (RabbitMQ refreshes them every 5 s), so a pod idle in the last reading can
take a message before the ReplicaSet removes it. Draining closes that race: the operator tells the
chosen workers to stop consuming the queue (`cancel_consumer`; after the worker's reply the
broker delivers nothing more to it), then asks them what they still hold (`inspect active` and
`reserved`, answered by the workers themselves, not from statistics). Only workers that replied to
both and hold nothing are removed; the others consume again (`add_consumer`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit


class WorkerControl(Protocol):
    """Stop, query and restart consumers of named workers."""

    async def cancel(self, queue: str, workers: list[str]) -> set[str]:
        """Stop the workers consuming `queue`; return those that confirmed."""
        ...

    async def held(self, workers: list[str]) -> dict[str, int]:
        """Tasks each worker holds (running or reserved); workers that did not answer are absent."""
        ...

    async def resume(self, queue: str, workers: list[str]) -> set[str]:
        """Make the workers consume `queue` again; return those that confirmed."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def node_name(template: str, pod: str) -> str:
    """The Celery node name of a pod's worker (`celery@{pod}`: Celery's default in a pod)."""
    return template.replace("{pod}", pod)


def _broker_url(amqp_url: str, vhost: str, username: str, password: str) -> str:
    parts = urlsplit(amqp_url)
    host = parts.hostname or "localhost"
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(("amqp", netloc, "/" + quote(vhost, safe=""), "", ""))


class CeleryControl:
    """WorkerControl over Celery's remote-control broadcast (the `celery.pidbox` exchange)."""

    def __init__(
        self, amqp_url: str, vhost: str, username: str, password: str, timeout: float = 2.0
    ) -> None:
        from celery import Celery  # only needed when draining is configured

        self._app: Any = Celery(
            "imgconv-operator",
            broker=_broker_url(amqp_url, vhost, username, password),
            set_as_current=False,
        )
        self._app.conf.broker_connection_retry_on_startup = False
        self._app.conf.broker_connection_max_retries = 1
        self._timeout = timeout

    @staticmethod
    def _confirmed(replies: Any) -> set[str]:
        names: set[str] = set()
        for reply in replies or []:
            for name, answer in dict(reply).items():
                if isinstance(answer, dict) and "ok" in answer:
                    names.add(str(name))
        return names

    def _call(self, command: str, queue: str, workers: list[str]) -> Any:
        # A connection of our own per call: kombu's connection pools are shared by every app
        # with the same broker URL (other autoscalers too), so none of them may close a pool.
        with self._app.connection_for_write() as conn:
            method = getattr(self._app.control, command)
            return method(
                queue, destination=workers, reply=True, timeout=self._timeout, connection=conn
            )

    async def cancel(self, queue: str, workers: list[str]) -> set[str]:
        """`celery control cancel_consumer` to exactly these workers."""
        if not workers:
            return set()
        replies = await asyncio.to_thread(self._call, "cancel_consumer", queue, workers)
        return self._confirmed(replies)

    async def held(self, workers: list[str]) -> dict[str, int]:
        """`celery inspect active` + `reserved`, asked of these workers only."""
        if not workers:
            return {}

        def ask() -> dict[str, int]:
            with self._app.connection_for_write() as conn:
                inspect = self._app.control.inspect(
                    destination=workers, timeout=self._timeout, connection=conn
                )
                active = inspect.active() or {}
                reserved = inspect.reserved() or {}
            both = set(active) & set(reserved)
            return {str(w): len(active[w] or []) + len(reserved[w] or []) for w in both}

        return await asyncio.to_thread(ask)

    async def resume(self, queue: str, workers: list[str]) -> set[str]:
        """`celery control add_consumer` (a worker that already consumes just says so)."""
        if not workers:
            return set()
        replies = await asyncio.to_thread(self._call, "add_consumer", queue, workers)
        return self._confirmed(replies)

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own connection."""
        return None
