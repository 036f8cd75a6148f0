"""A liveness heartbeat that costs no broker round trip: a consumer bootstep touches a file from
the worker's own event loop while its broker connection is up, and removes it when the consumer
stops (Celery restarts the consumer's steps when the connection is lost)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps

log = logging.getLogger(__name__)


def touch(path: Path) -> None:
    """Create `path` or bump its mtime."""
    path.touch(exist_ok=True)


def install_heartbeat(app: Celery, path: Path, interval: float) -> None:
    """Add the heartbeat step to `app`'s consumer: `path` is fresh while it consumes."""

    class ConsumerHeartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
        """Touches the heartbeat file every `interval` s while the consumer is connected."""

        requires = {"celery.worker.consumer.tasks:Tasks"}

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.timer_ref: Any = None

        def start(self, consumer: Any) -> None:
            self.beat(consumer)
            # The consumer's timer runs in its event loop: a stuck loop stops the heartbeat.
            self.timer_ref = consumer.timer.call_repeatedly(
                interval, self.beat, (consumer,), priority=10
            )

        def stop(self, consumer: Any) -> None:
            if self.timer_ref is not None:
                self.timer_ref.cancel()
                self.timer_ref = None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

        shutdown = stop

        def beat(self, consumer: Any) -> None:
            connection = consumer.connection
            try:
                if connection is not None and connection.connected:
                    touch(path)
                else:
                    path.unlink(missing_ok=True)
            except OSError as error:
                log.warning("cannot write the heartbeat file %s: %s", path, error)

    path.unlink(missing_ok=True)  # a file left by an earlier process proves nothing
    app.steps["consumer"].add(ConsumerHeartbeat)
