"""The Celery app of the conversion workers, built from settings when a worker starts.

Run: `imgconv worker` (see `imgconv worker --help`). Nothing here reads the environment at
import: the tasks are shared tasks, bound to whichever app `create_celery` builds. SIGTERM is
Celery's warm shutdown: the current task finishes first, so give pods a termination grace
period longer than IMGCONV_TASK_HARD_TIME_LIMIT.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from imgconv_core.queue_config import celery_config
from imgconv_core.settings import Settings, get_settings


def create_celery(settings: Settings) -> Celery:
    """The worker's Celery app, configured from `settings`."""
    celery = Celery("imgconv", include=["imgconv_worker.tasks"])
    celery.conf.update(celery_config(settings))
    return celery


@lru_cache(maxsize=1)
def _default_app() -> Celery:
    return create_celery(get_settings())


def __getattr__(name: str) -> Celery:
    # `celery -A imgconv_worker.celery_app:app` still works, built on first use, not at import.
    if name == "app":
        return _default_app()
    raise AttributeError(name)
