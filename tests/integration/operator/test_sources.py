"""Queue sources against the real RabbitMQ and Redis on this machine."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator

import amqp
import pytest
import redis

from imgconv_operator.sources import (
    KOMBU_PRIORITY_SEPARATOR,
    RabbitMQSource,
    RedisListSource,
    SourceError,
)
from tests.integration.operator.celery_probe import app as probe_app
from tests.support.kube_emulator import MANAGEMENT_URL, Broker, start_probe_worker

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

REDIS_URL = os.environ.get("IMGCONV_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


async def test_live_ready_count_over_amqp_right_after_publishing(
    broker: Callable[[], Broker],
) -> None:
    q = broker()
    q.publish(4)
    # No waiting: the management API's statistics lag, the passive declare does not.
    source = RabbitMQSource(
        MANAGEMENT_URL, "/", q.queue, "guest", "guest", amqp_url="amqp://127.0.0.1:5672"
    )
    try:
        reading = await source.read()
    finally:
        await source.close()
    assert reading.ready == 4


async def test_in_flight_work_is_attributed_to_the_consumer_host(
    broker: Callable[[], Broker],
) -> None:
    q = broker()
    q.publish(3)
    q.hold_one()
    source = RabbitMQSource(MANAGEMENT_URL, "/", q.queue, "guest", "guest")
    try:
        # Queue, consumer and channel statistics refresh independently (every 5 s).
        for _ in range(60):
            reading = await source.read()
            settled = reading.consumers and reading.in_flight_by_host and reading.ready == 2
            if settled and reading.published == 3 and reading.deliveries_by_host:
                break
            await asyncio.sleep(0.25)
    finally:
        await source.close()
    assert reading.ready == 2
    assert reading.unacked == 1
    assert reading.consumers == 1
    assert reading.published == 3
    assert reading.in_flight_by_host == {"127.0.0.1": 1}
    assert reading.deliveries_by_host == {"127.0.0.1": 1}  # the channel's deliver_get counter


@pytest.fixture
def celery_queue(rabbitmq_management: str) -> Iterator[str]:
    """A real Celery worker (solo pool, prefetch 1, acks_late) on a queue of its own."""
    queue = f"imgconv-test-celery-{uuid.uuid4().hex[:12]}"
    worker = start_probe_worker(queue)
    try:
        yield queue
    finally:
        worker.kill()  # a throwaway worker: its unacked task goes back, then the queue goes
        worker.wait()
        probe_app.pool.force_close_all()
        with amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest") as conn:
            conn.channel().queue_delete(queue)


async def test_a_real_celery_worker_holds_one_task_per_slot_visible_on_its_host(
    celery_queue: str,
) -> None:
    # With imgconv's worker settings and one slot busy on a 20 s task, the other tasks stay
    # ready in the queue and the running one is unacked on the worker's own connection, whose
    # peer host is what the operator matches to pod IPs.
    for _ in range(3):
        probe_app.send_task("imgconv_probe.hold", args=[20], queue=celery_queue)
    source = RabbitMQSource(MANAGEMENT_URL, "/", celery_queue, "guest", "guest")
    reading = None
    try:
        for _ in range(120):
            try:
                reading = await source.read()
            except SourceError:
                reading = None  # the worker has not declared the queue yet
            # The queue's message counts, its consumer count and the channels' statistics
            # refresh separately: wait until one reading has caught up with all of them.
            counts = (reading.ready, reading.unacked, reading.consumers) if reading else None
            if counts == (2, 1, 1) and reading and reading.in_flight_by_host:
                break
            await asyncio.sleep(0.25)
    finally:
        await source.close()
    assert reading is not None
    assert (reading.ready, reading.unacked, reading.consumers) == (2, 1, 1)
    assert reading.in_flight_by_host == {"127.0.0.1": 1}


async def test_missing_queue_wrong_password_and_dead_broker_are_source_errors() -> None:
    missing = RabbitMQSource(MANAGEMENT_URL, "/", f"absent-{uuid.uuid4().hex}", "guest", "guest")
    wrong = RabbitMQSource(MANAGEMENT_URL, "/", "conversions", "guest", "not-the-password")
    dead = RabbitMQSource("http://127.0.0.1:9", "/", "conversions", "guest", "guest")
    for source in (missing, wrong, dead):
        try:
            with pytest.raises(SourceError):
                await source.read()
        finally:
            await source.close()


@pytest.fixture
def redis_key() -> Iterator[str]:
    """A unique list key in a Redis database of its own; cleaned up afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI") == "true":
            pytest.fail("Redis not reachable on 127.0.0.1:6379")
        pytest.skip("Redis unreachable")  # outside CI only: with CI=true it failed above
    key = f"imgconv-test-{uuid.uuid4().hex[:12]}"
    yield key
    client.delete(key, f"{key}{KOMBU_PRIORITY_SEPARATOR}6")
    client.close()


async def test_redis_counts_priority_lists_and_unacked(redis_key: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.rpush(redis_key, "a", "b")
    client.rpush(f"{redis_key}{KOMBU_PRIORITY_SEPARATOR}6", "c")
    # kombu keeps delivered-but-unacked messages in one hash per database.
    client.hset("unacked", redis_key, "{}")
    source = RedisListSource(REDIS_URL, redis_key)
    try:
        reading = await source.read()
        after_ack = int(client.hlen("unacked")) - 1
    finally:
        await source.close()
        client.hdel("unacked", redis_key)
        client.close()
    assert reading.ready == 3
    assert reading.unacked == after_ack + 1
    assert reading.in_flight_by_host is None  # Redis has no per-consumer information


async def test_unreachable_redis_is_a_source_error() -> None:
    source = RedisListSource("redis://127.0.0.1:9/0", "conversions")
    try:
        with pytest.raises(SourceError):
            await source.read()
    finally:
        await source.close()
