"""Engine and session factories (no import-time singletons: callers pass settings)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from imgconv_core.settings import Settings


def _engine_options(settings: Settings, pool_size: int | None) -> dict[str, Any]:
    return {
        "pool_size": pool_size or settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        "connect_args": {"connect_timeout": 5, "application_name": "imgconv"},
    }


# libpq keeps a connection's output buffer at the size of the largest message it sent: a pooled
# connection that stored a 20 MiB image would hold 20 MiB for good. Such a connection is closed
# when it returns to the pool instead (the next checkout opens a fresh one).
LARGE_MESSAGE_BYTES = 1024 * 1024
_SENT_LARGE = "imgconv_sent_large_message"


def make_engine(settings: Settings, *, pool_size: int | None = None) -> Engine:
    """A pooled engine for `settings.database_url` that survives Postgres restarts and does
    not keep connections that sent large messages."""
    engine = create_engine(settings.database_url, **_engine_options(settings, pool_size))
    event.listen(engine, "before_cursor_execute", _note_large_parameters)
    event.listen(engine, "checkin", _close_if_large_buffer)
    return engine


def _note_large_parameters(
    conn: Connection,
    _cursor: Any,
    _statement: str,
    parameters: Any,
    _context: Any,
    executemany: bool,
) -> None:
    rows = parameters if executemany else [parameters]
    for row in rows:
        values = row.values() if isinstance(row, Mapping) else row
        for value in values or ():
            if isinstance(value, bytes | bytearray | memoryview) and (
                len(value) > LARGE_MESSAGE_BYTES
            ):
                conn.info[_SENT_LARGE] = True
                return


def _close_if_large_buffer(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    if record.info.pop(_SENT_LARGE, False):
        record.invalidate()


def make_async_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """The same, for the event loop (psycopg's async mode): reads that need no thread."""
    return create_async_engine(settings.database_url, **_engine_options(settings, pool_size))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (we serialize after committing)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session inside one transaction: committed on success, rolled back on error."""
    with factory() as session, session.begin():
        yield session
