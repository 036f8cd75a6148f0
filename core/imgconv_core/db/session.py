"""Engine and session factories (no import-time singletons: callers pass settings)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from imgconv_core.settings import Settings


def _engine_options(settings: Settings, pool_size: int | None) -> dict[str, Any]:
    return {
        "pool_size": pool_size or settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        "connect_args": {"connect_timeout": 5, "application_name": "imgconv"},
    }


def make_engine(settings: Settings, *, pool_size: int | None = None) -> Engine:
    """A pooled engine for `settings.database_url` that survives Postgres restarts."""
    return create_engine(settings.database_url, **_engine_options(settings, pool_size))


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
