"""`imgconv`: every imgconv process starts here. Settings come only from `IMGCONV_*` variables;
flags give the shape of the process (ports, concurrency, names)."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import click

from imgconv_cli.commands import api, healthcheck, migrate, operator, version, worker


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # As PID 1 in a container a process gets no default SIGTERM action: without this, a
    # `migrate` would ignore `podman stop` / pod deletion until SIGKILL. Servers install their own.
    sys.exit(128 + signum)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """imgconv: image conversion service.

    \b
    Run one process per container:
      imgconv migrate      apply database migrations, then exit
      imgconv api          the HTTP API (and the sweeper)
      imgconv worker       a Celery conversion worker
      imgconv operator     the worker autoscaling operator (kopf)

    Configuration comes from IMGCONV_* environment variables (see the README); a bad value
    stops the process with one line naming the variable.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


for command in (
    api.api,
    worker.worker,
    worker.worker_liveness,
    operator.operator,
    migrate.migrate,
    healthcheck.healthcheck,
    version.version,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="imgconv")
