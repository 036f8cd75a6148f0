"""`imgconv api`: the HTTP API under uvicorn (the sweeper and outbox relay run inside it)."""

from __future__ import annotations

from typing import Any

import click

from imgconv_cli.process_file import record_process
from imgconv_cli.settings_check import load_settings

APP_FACTORY = "imgconv_api.main:create_app"


def uvicorn_config(
    host: str,
    port: int,
    *,
    workers: int = 1,
    proxy_headers: bool = False,
    forwarded_allow_ips: str = "127.0.0.1",
    log_level: str = "info",
    access_log: bool = True,
    graceful_shutdown_seconds: float = 10,
    keep_alive_seconds: float = 5,
) -> dict[str, Any]:
    """uvicorn's keyword arguments for an imgconv API process (also the benchmark reference's)."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "proxy_headers": proxy_headers,
        "forwarded_allow_ips": forwarded_allow_ips,
        "log_level": log_level,
        "access_log": access_log,
        # Open long polls (up to IMGCONV_LONG_POLL_MAX_SECONDS) must not hold up a rollout.
        "timeout_graceful_shutdown": graceful_shutdown_seconds,
        "timeout_keep_alive": keep_alive_seconds,
        "server_header": False,
    }


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="API processes (one per core; in Kubernetes prefer more replicas).",
)
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=False,
    show_default=True,
    help="Take client address and scheme from X-Forwarded-* sent by --forwarded-allow-ips. "
    "(Rate limits use IMGCONV_TRUSTED_PROXIES either way.)",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    help="Comma-separated proxy addresses whose X-Forwarded-* headers are believed, or '*'.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option(
    "--graceful-shutdown-seconds",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    help="On SIGTERM, wait this long for open requests (long polls) before closing them.",
)
def api(
    host: str,
    port: int,
    workers: int,
    proxy_headers: bool,
    forwarded_allow_ips: str,
    log_level: str,
    access_log: bool,
    graceful_shutdown_seconds: float,
) -> None:
    """Serve the HTTP API (uploads, polls, downloads, /healthz, /readyz, /metrics)."""
    load_settings()
    from imgconv_core.telemetry.multiprocess_dir import prepare_multiprocess_dir

    # An earlier run's metric files would add up. First of all: the imports below define
    # metrics, which open this process's files; emptied later, the API (one process) would
    # write its counts to deleted files.
    prepare_multiprocess_dir()
    import uvicorn

    from imgconv_api.http_server import HTTP_PROTOCOL

    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    record_process("api", health_url=f"http://{probe_host}:{port}/healthz")
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        http=HTTP_PROTOCOL,  # uvicorn's own, plus a header deadline
        **uvicorn_config(
            host,
            port,
            workers=workers,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
            log_level=log_level,
            access_log=access_log,
            graceful_shutdown_seconds=graceful_shutdown_seconds,
        ),
    )
