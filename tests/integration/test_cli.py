"""`imgconv` subcommands against the real services: concurrent migrations, and the worker
liveness check following the broker connection."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg

from tests.support.proxy import CuttableProxy
from tests.support.services import (
    AMQP_HOST,
    AMQP_PORT,
    Stack,
    amqp_url,
    create_database,
    drop_database,
    free_port,
    imgconv,
    running,
    start_worker,
    wait_until,
)


def head_revision() -> str:
    """The newest migration's revision id, read from the scripts."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from imgconv_cli.commands.migrate import migrations_dir

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_two_migrations_started_at_once_both_succeed() -> None:
    url = create_database()
    try:
        env = {"IMGCONV_MODE": "local", "IMGCONV_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
        runs = [
            subprocess.Popen(
                imgconv("migrate"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        # Exactly one of them applied the migrations; the other found the schema at head.
        assert sum("Running upgrade" in out for out in outputs) == 1, outputs
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            assert versions == [(head_revision(),)]
            assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    finally:
        drop_database(url)


def liveness(heartbeat: Path) -> int:
    """Exit code of `imgconv worker-liveness` for the worker writing `heartbeat`."""
    return subprocess.run(
        imgconv("worker-liveness", "--heartbeat-file", str(heartbeat)),
        capture_output=True,
        check=False,
        timeout=30,
    ).returncode


def test_worker_liveness_fails_once_the_broker_connection_is_cut(
    private_stack: Stack, tmp_path: Path
) -> None:
    proxy = CuttableProxy((AMQP_HOST, AMQP_PORT), free_port())
    proxy.restore()
    heartbeat = tmp_path / "worker.heartbeat"
    worker = start_worker(
        private_stack,
        heartbeat_file=heartbeat,
        IMGCONV_BROKER_URL=amqp_url(private_stack.vhost, proxy.port),
    )
    with running(worker):
        wait_until(lambda: liveness(heartbeat) == 0, 30, "a consuming worker is not alive", worker)
        proxy.cut()
        wait_until(lambda: liveness(heartbeat) == 1, 60, "a cut-off worker still looks alive")
        proxy.restore()
        wait_until(lambda: liveness(heartbeat) == 0, 90, "a reconnected worker is not alive")
    assert liveness(heartbeat) == 1  # a stopped worker is not alive either
    proxy.cut()
