"""`imgconv worker` (a Celery conversion worker) and `imgconv worker-liveness` (its probe)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from imgconv_cli.process_file import DEFAULT_HEARTBEAT_FILE, heartbeat_age, record_process
from imgconv_cli.settings_check import load_settings

HEARTBEAT_INTERVAL_SECONDS = 10.0
DEFAULT_MAX_AGE_SECONDS = 60.0


def default_concurrency() -> int:
    """The CPUs this process may run on (a container's cpuset, not the node's count)."""
    return max(1, len(os.sched_getaffinity(0)))


heartbeat_file_option = click.option(
    "--heartbeat-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_HEARTBEAT_FILE,
    show_default=True,
    help="Touched every 10 s while the worker's broker consumer is connected and its event "
    "loop runs; removed when the consumer stops or disconnects.",
)


@click.command()
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1),
    default=None,
    help="Conversions at once (prefork child processes). Default: the CPUs available.",
)
@click.option(
    "-n",
    "--hostname",
    default="imgconv@%h",
    show_default=True,
    help="Celery node name (%h is the host name; the operator's drain addresses pods by it).",
)
@click.option(
    "-P",
    "--pool",
    type=click.Choice(["prefork", "solo", "threads"]),
    default="prefork",
    show_default=True,
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    envvar="IMGCONV_WORKER_METRICS_PORT",
    show_default=True,
    help="Serve Prometheus metrics on this port (0: off). Set PROMETHEUS_MULTIPROC_DIR for "
    "prefork children.",
)
@click.option(
    "-l",
    "--loglevel",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
@heartbeat_file_option
def worker(
    concurrency: int | None,
    hostname: str,
    pool: str,
    metrics_port: int,
    loglevel: str,
    heartbeat_file: Path,
) -> None:
    """Run a Celery worker on the conversions queue.

    SIGTERM is a warm shutdown: the worker stops taking messages, finishes the conversions it
    runs, then exits 0. Give it longer than IMGCONV_TASK_HARD_TIME_LIMIT to do so.
    """
    settings = load_settings()
    from celery.utils.nodenames import default_nodename, host_format

    from imgconv_core.jobs import CONVERSIONS_QUEUE
    from imgconv_worker.celery_app import create_celery
    from imgconv_worker.heartbeat import install_heartbeat

    os.environ["IMGCONV_WORKER_METRICS_PORT"] = str(metrics_port)
    app = create_celery(settings)
    install_heartbeat(app, heartbeat_file, HEARTBEAT_INTERVAL_SECONDS)
    record_process(
        "worker", heartbeat_file=str(heartbeat_file), max_age_seconds=DEFAULT_MAX_AGE_SECONDS
    )
    celery_worker = app.Worker(
        hostname=host_format(default_nodename(hostname)),
        pool_cls=pool,
        loglevel=loglevel.upper(),
        concurrency=concurrency or default_concurrency(),
        queues=[CONVERSIONS_QUEUE],
        # Worker-to-worker chatter the product does not use; each costs broker traffic per node.
        without_gossip=True,
        without_mingle=True,
    )
    celery_worker.start()
    sys.exit(celery_worker.exitcode)


@click.command("worker-liveness")
@heartbeat_file_option
@click.option(
    "--max-age-seconds",
    type=click.FloatRange(min=1),
    default=DEFAULT_MAX_AGE_SECONDS,
    show_default=True,
    help="Fail when the heartbeat is older than this.",
)
def worker_liveness(heartbeat_file: Path, max_age_seconds: float) -> None:
    """Exit 0 if the worker on this host is alive: its heartbeat file is fresh.

    Costs no broker round trip (the worker touches the file from its own event loop while
    its consumer is connected), so it can run as a Kubernetes liveness probe on every pod.
    """
    age = heartbeat_age(heartbeat_file)
    if age is None:
        click.echo(f"not alive: no heartbeat at {heartbeat_file}", err=True)
        sys.exit(1)
    if age > max_age_seconds:
        click.echo(f"not alive: heartbeat is {age:.0f} s old (> {max_age_seconds:.0f} s)", err=True)
        sys.exit(1)
    click.echo(f"alive: heartbeat {age:.0f} s old")
