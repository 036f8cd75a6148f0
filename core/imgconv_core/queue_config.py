"""Celery configuration shared by the publisher (API) and the consumer (worker), as plain data
so both declare the broker objects identically. The broker URL decides the transport."""

from __future__ import annotations

from typing import Any

from imgconv_core.jobs import CONVERSIONS_QUEUE
from imgconv_core.settings import Settings


def is_redis_broker(url: str) -> bool:
    """Whether the broker is Redis (local mode) rather than RabbitMQ."""
    return url.startswith(("redis://", "rediss://", "redis+socket://"))


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings for API and worker."""
    transport_options: dict[str, Any] = {}
    if is_redis_broker(settings.broker_url):
        # An unacked message comes back after this long; it must outlive the hard time limit.
        transport_options["visibility_timeout"] = settings.task_hard_time_limit + 60
    else:
        # Publisher confirms: a job is marked enqueued only once RabbitMQ has the message.
        transport_options["confirm_publish"] = True
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_timeout": settings.publish_timeout_seconds,
        "broker_connection_retry_on_startup": True,
        "broker_heartbeat": 30,
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": CONVERSIONS_QUEUE,
        "task_create_missing_queues": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_hard_time_limit,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_kb,
        "worker_send_task_events": False,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "enable_utc": True,
    }
