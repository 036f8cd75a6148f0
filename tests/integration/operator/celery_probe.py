"""A minimal Celery app configured like the imgconv worker (prefetch 1, acks_late), for tests.

The queue name comes from IMGCONV_PROBE_QUEUE so every test run uses a queue of its own.
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery(
    "imgconv_probe",
    broker=os.environ.get("IMGCONV_PROBE_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
)
app.conf.update(
    task_default_queue=os.environ.get("IMGCONV_PROBE_QUEUE", "imgconv-probe"),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="imgconv_probe.hold")  # type: ignore[untyped-decorator]
def hold(seconds: float) -> float:
    """Occupy the worker like a long conversion."""
    time.sleep(seconds)
    return seconds
