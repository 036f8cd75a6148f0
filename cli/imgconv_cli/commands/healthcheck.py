"""`imgconv healthcheck`: the image's HEALTHCHECK, whichever subcommand the container runs."""

from __future__ import annotations

import json
import sys

import click

from imgconv_cli.process_file import PROCESS_FILE, check_process


@click.command()
def healthcheck() -> None:
    """Exit 0 if this container's imgconv process is healthy.

    The api and operator are asked on their health endpoint; a worker is judged by its
    heartbeat file (see worker-liveness). A container running no long-lived process passes.
    """
    try:
        facts = json.loads(PROCESS_FILE.read_text())
    except FileNotFoundError:
        click.echo("no imgconv server process in this container")
        return
    except (OSError, ValueError) as error:
        click.echo(f"unreadable {PROCESS_FILE}: {error}", err=True)
        sys.exit(1)
    ok, why = check_process(facts)
    click.echo(why, err=not ok)
    sys.exit(0 if ok else 1)
