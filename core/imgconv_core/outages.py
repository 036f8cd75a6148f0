"""Exceptions that mean a service is down (Postgres, Redis, the image store), not a bug.

Background loops (the sweeper, the outbox relay) retry through such outages and log one line
each time; a traceback is kept for everything else, which is a bug to look at.
"""

from __future__ import annotations

import logging

import psycopg
import redis
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from imgconv_core.errors import StorageUnavailable

_DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout, psycopg.OperationalError)
# Every exception class `database_unreachable` may say yes to (for handler registration).
DATABASE_ERRORS = (DBAPIError, PoolTimeout, psycopg.OperationalError)


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says Postgres could not be reached or dropped the connection."""
    if isinstance(exc, _DATABASE_DOWN):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def outage(exc: BaseException) -> str | None:
    """One line naming the service that is down and why, or None when `exc` is not an outage."""
    if database_unreachable(exc):
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        return f"database unavailable: {_first_line(cause)}"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return f"redis unavailable: {_first_line(exc)}"
    if isinstance(exc, StorageUnavailable):
        return f"image store unavailable: {_first_line(exc)}"
    return None


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log that `what` failed: one warning line naming the service when one is down, else an
    error with the traceback (a bug)."""
    down = outage(exc)
    if down is None:
        logger.error("%s (unexpected error)", what, exc_info=exc)
    else:
        logger.warning("%s (%s)", what, down)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
