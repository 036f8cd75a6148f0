"""Where queue depth comes from: the RabbitMQ management API (plus optional live AMQP) or Redis."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import defaultdict
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import redis.asyncio as aioredis

from imgconv_operator.scaling import SourceReading


class SourceError(Exception):
    """The queue could not be read; the autoscaler falls back instead of guessing."""


class QueueSource(Protocol):
    """Anything that can read the queue."""

    async def read(self) -> SourceReading:
        """Read the queue once or raise SourceError."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class RabbitMQSource:
    """Queue depth from the management API; with an AMQP URL the ready count is read live too.

    The management API's counts lag up to `collect_statistics_interval` (5 s by default). A
    passive queue.declare over AMQP returns the ready count as of now, which is what makes the
    reaction to a new backlog fast; in-flight counts and rates still come from the management API.
    """

    def __init__(
        self,
        management_url: str,
        vhost: str,
        queue: str,
        username: str,
        password: str,
        amqp_url: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._base = management_url.rstrip("/")
        self._vhost = vhost
        self._queue = queue
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._amqp_url = _with_credentials(amqp_url, username, password) if amqp_url else None
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._amqp: Any = None  # amqp.Connection, opened lazily in a worker thread

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        try:
            async with self._session.get(self._base + path, params=params) as resp:
                if resp.status == 404:
                    raise SourceError(f"queue {self._queue!r} not found in vhost {self._vhost!r}")
                if resp.status >= 400:
                    raise SourceError(f"management API {resp.status} on {path}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceError(f"management API unreachable: {exc!r}") from exc

    async def read(self) -> SourceReading:
        """Read counts, counters and per-host in-flight work."""
        vhost = quote(self._vhost, safe="")
        queue = await self._get(f"/api/queues/{vhost}/{quote(self._queue, safe='')}")
        stats = queue.get("message_stats") or {}
        our_channels = {
            (c.get("channel_details") or {}).get("name")
            for c in queue.get("consumer_details") or []
        }
        channels = []
        if our_channels:
            channels = await self._get(
                f"/api/vhosts/{vhost}/channels",
                params={
                    "columns": "name,messages_unacknowledged,connection_details.peer_host,"
                    "message_stats.deliver_get"
                },
            )
        by_host: dict[str, int] = defaultdict(int)
        deliveries: dict[str, int] = defaultdict(int)
        for channel in channels:
            if channel.get("name") in our_channels:
                host = str((channel.get("connection_details") or {}).get("peer_host"))
                by_host[host] += int(channel.get("messages_unacknowledged") or 0)
                counters = channel.get("message_stats") or {}  # [] before the first delivery
                deliveries[host] += int(counters.get("deliver_get") or 0)
        ready = int(queue.get("messages_ready") or 0)
        consumers = int(queue.get("consumers") or 0)
        if self._amqp_url is not None:
            ready, consumers = await asyncio.to_thread(self._declare_passive)
        return SourceReading(
            ready=ready,
            unacked=int(queue.get("messages_unacknowledged") or 0),
            consumers=consumers,
            published=_int_or_none(stats.get("publish")),
            acked=_int_or_none(stats.get("ack")),
            in_flight_by_host=dict(by_host),
            deliveries_by_host=dict(deliveries),
        )

    def _declare_passive(self) -> tuple[int, int]:
        import amqp  # only needed when amqpUrl is set

        try:
            if self._amqp is None:
                parts = urlsplit(self._amqp_url or "")
                self._amqp = amqp.Connection(
                    host=f"{parts.hostname}:{parts.port or 5672}",
                    userid=parts.username or "guest",
                    password=parts.password or "",
                    virtual_host=self._vhost,
                    connect_timeout=self._timeout,
                    read_timeout=self._timeout,
                    write_timeout=self._timeout,
                )
                self._amqp.connect()
            channel = self._amqp.channel()
            try:
                _, ready, consumers = channel.queue_declare(self._queue, passive=True)
            finally:
                channel.close()
            return int(ready), int(consumers)
        except Exception as exc:
            self._close_amqp()
            raise SourceError(f"AMQP passive declare failed: {exc!r}") from exc

    def _close_amqp(self) -> None:
        if self._amqp is not None:
            with contextlib.suppress(Exception):  # being discarded either way
                self._amqp.close()
            self._amqp = None

    async def close(self) -> None:
        """Close the HTTP session and the AMQP connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        await asyncio.to_thread(self._close_amqp)


def _with_credentials(url: str, username: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


# kombu's Redis transport splits a queue into one list per priority step and keeps every
# delivered-but-unacknowledged message (acks_late) in one hash shared by all queues.
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (3, 6, 9)
KOMBU_UNACKED_HASH = "unacked"


class RedisListSource:
    """Queue depth from the Celery Redis broker: list lengths plus the shared unacked hash.

    Redis knows nothing about consumers, so there is no per-pod information: the decision then
    treats every pod as possibly busy and scales down only when nothing at all is in flight.
    """

    def __init__(self, url: str, list_key: str, password: str | None = None) -> None:
        self._client = aioredis.Redis.from_url(
            url, password=password, socket_timeout=5, socket_connect_timeout=5
        )
        self._keys = [list_key] + [
            f"{list_key}{KOMBU_PRIORITY_SEPARATOR}{step}" for step in KOMBU_PRIORITY_STEPS
        ]

    async def read(self) -> SourceReading:
        """LLEN over the priority lists and HLEN of the unacked hash, in one round trip."""
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in self._keys:
                    pipe.llen(key)
                pipe.hlen(KOMBU_UNACKED_HASH)
                results = await pipe.execute()
        except Exception as exc:
            raise SourceError(f"redis unreachable: {exc!r}") from exc
        *lengths, unacked = (int(r) for r in results)
        return SourceReading(ready=sum(lengths), unacked=unacked, consumers=0)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
