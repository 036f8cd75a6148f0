"""Alembic environment: the same settings and metadata as the application."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from imgconv_core.db.models import Base
from imgconv_core.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """An explicit `sqlalchemy.url` (tests) wins over IMGCONV_DATABASE_URL."""
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_offline() -> None:
    """Emit SQL without a connection (`alembic upgrade head --sql`)."""
    context.configure(url=database_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Apply migrations over a connection; an advisory lock keeps concurrent runs apart."""
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.execute("SELECT pg_advisory_xact_lock(7312001)")
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
