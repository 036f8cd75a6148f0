"""`imgconv operator`: the WorkerAutoscaler operator (kopf)."""

from __future__ import annotations

import click

from imgconv_cli.process_file import record_process


@click.command()
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch WorkerAutoscalers in this namespace (repeatable). Needs only namespaced RBAC.",
)
@click.option(
    "-A",
    "--all-namespaces",
    is_flag=True,
    help="Watch every namespace (needs cluster-wide RBAC).",
)
@click.option(
    "--liveness-port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Serve kopf's liveness endpoint on http://0.0.0.0:PORT/healthz (0: off).",
)
@click.option(
    "--standalone",
    is_flag=True,
    help="Skip kopf peering (only safe when exactly one operator can run).",
)
@click.option("--verbose", is_flag=True, help="Log more.")
@click.option("--debug", is_flag=True, help="Log everything, including API traffic.")
def operator(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    liveness_port: int,
    standalone: bool,
    verbose: bool,
    debug: bool,
) -> None:
    """Scale the worker Deployment on queue depth (the WorkerAutoscaler resource).

    Metrics are served on IMGCONV_OPERATOR_METRICS_PORT (default 9090).
    """
    if bool(namespaces) == all_namespaces:
        raise click.UsageError("give --namespace NS (one or more) or --all-namespaces")
    import kopf

    import imgconv_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=verbose, debug=debug)
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    if liveness_port:
        record_process("operator", health_url=f"http://127.0.0.1:{liveness_port}/healthz")
    kopf.run(
        clusterwide=all_namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        standalone=standalone or None,
    )
