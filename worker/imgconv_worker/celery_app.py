"""The Celery app of the conversion workers.

Run: `celery -A imgconv_worker.celery_app:app worker -Q conversions`. SIGTERM is Celery's warm
shutdown: the current task finishes first, so give pods a termination grace period longer than
IMGCONV_TASK_HARD_TIME_LIMIT.
"""

from __future__ import annotations

from celery import Celery

from imgconv_core.queue_config import celery_config
from imgconv_core.settings import get_settings


def create_celery() -> Celery:
    """The worker's Celery app, configured from IMGCONV_* settings."""
    celery = Celery("imgconv", include=["imgconv_worker.tasks"])
    celery.conf.update(celery_config(get_settings()))
    return celery


app = create_celery()
