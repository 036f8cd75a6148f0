"""Publishes conversion messages to the broker (job ids only, after the rows are committed)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence

from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from imgconv_core.jobs import CONVERSIONS_QUEUE, CONVERT_TASK
from imgconv_core.queue_config import celery_config, is_redis_broker
from imgconv_core.settings import Settings
from imgconv_core.telemetry.tracing import continued_trace

log = logging.getLogger(__name__)


class CeleryPublisher:
    """Sends `imgconv.convert` messages; never blocks longer than the publish timeout."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.celery = Celery("imgconv-api", set_as_current=False)
        self.celery.conf.update(celery_config(settings))

    def publish(
        self,
        job_ids: Sequence[uuid.UUID],
        traceparents: Mapping[uuid.UUID, str] | None = None,
    ) -> list[uuid.UUID]:
        """Publish one message per job on one producer; returns those the broker accepted
        (confirmed, on RabbitMQ), in order. Stops at the first failure. A job's stored trace
        context (`traceparents`) becomes the parent of its publish, carried in the headers."""
        sent: list[uuid.UUID] = []
        contexts = traceparents or {}
        try:
            with self.celery.producer_or_acquire() as producer:
                for job_id in job_ids:
                    with continued_trace(contexts.get(job_id)):
                        self.celery.send_task(
                            CONVERT_TASK,
                            args=[str(job_id)],
                            queue=CONVERSIONS_QUEUE,
                            task_id=str(job_id),
                            retry=False,
                            producer=producer,
                        )
                    sent.append(job_id)
        except (OperationalError, KombuError, OSError) as exc:
            log.warning(
                "broker unavailable, %d job(s) left to the outbox: %s",
                len(job_ids) - len(sent),
                exc,
            )
        return sent

    def queue_depth(self) -> tuple[int, int]:
        """(messages waiting, consumers) of the conversions queue."""
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=self.settings.publish_timeout_seconds)
            # Declared as Celery declares it (durable, no arguments), so a missing queue (a
            # reset broker) reads as empty instead of failing.
            _, messages, consumers = conn.default_channel.queue_declare(
                CONVERSIONS_QUEUE, durable=True, auto_delete=False
            )
            if is_redis_broker(self.settings.broker_url):  # Redis has no consumer count
                consumers = len(self.celery.control.ping(timeout=0.5) or [])
            return int(messages), int(consumers)

    def ping(self) -> None:
        """Raise if the broker cannot be reached within the publish timeout."""
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=self.settings.publish_timeout_seconds)

    def close(self) -> None:
        """Release broker connections."""
        self.celery.close()
