"""`imgconv migrate`: bring the database schema to the newest revision."""

from __future__ import annotations

import importlib.resources
import logging
import sys
import time
from pathlib import Path

import click

from imgconv_cli.settings_check import load_settings


def migrations_dir() -> Path:
    """The Alembic script directory (`migrations/`, installed as `imgconv_migrations`)."""
    return Path(str(importlib.resources.files("imgconv_migrations")))


def wait_for_database(url: str, wait_seconds: float) -> None:
    """Return once the database accepts a connection; exit 1 after `wait_seconds`."""
    from sqlalchemy import create_engine, pool, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(url, poolclass=pool.NullPool, connect_args={"connect_timeout": 3})
    deadline = time.monotonic() + wait_seconds
    said = False
    try:
        while True:
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                return
            except OperationalError as error:
                if time.monotonic() >= deadline:
                    reason = str(error.orig).strip().splitlines()[0] if error.orig else error
                    click.echo(
                        f"Error: the database did not answer within {wait_seconds:.0f} s "
                        f"(IMGCONV_DATABASE_URL): {reason}",
                        err=True,
                    )
                    sys.exit(1)
                if not said:
                    click.echo("waiting for the database ...", err=True)
                    said = True
                time.sleep(1)
    finally:
        engine.dispose()


@click.command()
@click.option(
    "--wait-seconds",
    type=click.FloatRange(0),
    default=60,
    show_default=True,
    help="How long to wait for PostgreSQL to accept connections before failing.",
)
def migrate(wait_seconds: float) -> None:
    """Apply the database migrations (alembic upgrade head), then exit.

    Safe to run from several replicas at once: a PostgreSQL advisory lock lets one migrate
    while the others wait, then find nothing left to do.
    """
    settings = load_settings()
    from alembic import command
    from alembic.config import Config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    wait_for_database(settings.database_url, wait_seconds)
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    command.upgrade(config, "head")
