"""Real services for tests: a throwaway database, vhost and Redis db on the machine's servers,
and the API/worker started as real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

PG_ADMIN = os.environ.get("IMGCONV_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("IMGCONV_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("IMGCONV_TEST_REDIS_PORT", "6379"))
REDIS_DB = int(os.environ.get("IMGCONV_TEST_REDIS_DB", "12"))
AMQP_HOST = os.environ.get("IMGCONV_TEST_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("IMGCONV_TEST_AMQP_PORT", "5672"))


def free_port() -> int:
    """A free TCP port below the kernel's ephemeral range."""
    for _ in range(200):
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 12000
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def create_database() -> str:
    """A new empty database; returns its SQLAlchemy URL."""
    name = f"imgconv_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    """Drop a database made by `create_database` (closing leftover connections)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def imgconv(*args: str) -> list[str]:
    """The command line of an `imgconv` subcommand from this environment (the one launcher)."""
    return [str(BIN / "imgconv"), *args]


def migrate(url: str) -> None:
    """Run `imgconv migrate` as a deployment would."""
    env = {**os.environ, "IMGCONV_MODE": "local", "IMGCONV_DATABASE_URL": url}
    subprocess.run(
        imgconv("migrate", "--wait-seconds", "10"), env=env, check=True, capture_output=True
    )


def create_vhost() -> str:
    """A private RabbitMQ vhost, so other suites' workers never take our messages."""
    name = f"imgconv_test_{uuid.uuid4().hex[:10]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    return name


def delete_vhost(name: str) -> None:
    """Remove a vhost made by `create_vhost`."""
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False, capture_output=True)


def amqp_url(vhost: str, port: int = AMQP_PORT) -> str:
    """The broker URL of a vhost on the machine's RabbitMQ (or a proxy port in front of it)."""
    return f"amqp://guest:guest@{AMQP_HOST}:{port}/{vhost}"


@dataclass
class Process:
    """A child process with its output in a log file (shown when a test fails)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        """Signal the whole process group and wait."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def output(self) -> str:
        """The process's log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    """Start a process in its own group, logging to `log_dir/name.log`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Process(name, proc, log)


@dataclass
class Stack:
    """Environment of one test stack: database, broker vhost, Redis db, settings overrides."""

    database_url: str
    vhost: str
    redis_url: str
    log_dir: Path
    overrides: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment variables for an API or worker process of this stack."""
        env = {
            **os.environ,
            "IMGCONV_MODE": "local",
            "IMGCONV_DATABASE_URL": self.database_url,
            "IMGCONV_REDIS_URL": self.redis_url,
            "IMGCONV_BROKER_URL": amqp_url(self.vhost),
            "IMGCONV_SWEEP_INTERVAL_SECONDS": "1",
            "IMGCONV_PUBLISH_GRACE_SECONDS": "1",
            "IMGCONV_PUBLISH_TIMEOUT_SECONDS": "1",
            # Every test client shares 127.0.0.1: per-IP limits are tested where set lower.
            "IMGCONV_UPLOAD_RATE_PER_IP": "100000/minute",
            "IMGCONV_TOKEN_RATE_PER_IP": "100000/minute",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(self.overrides)
        env.update(extra)
        return env


def make_stack(log_dir: Path, redis_db: int = REDIS_DB) -> Stack:
    """A migrated throwaway database, a private vhost and an emptied Redis db."""
    url = create_database()
    migrate(url)
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db).flushdb()
    return Stack(
        database_url=url,
        vhost=create_vhost(),
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        log_dir=log_dir,
    )


def destroy_stack(stack: Stack) -> None:
    """Remove what `make_stack` made."""
    drop_database(stack.database_url)
    delete_vhost(stack.vhost)


def api_command(port: int, workers: int = 1) -> list[str]:
    """`imgconv api` as tests and benchmarks run it: local only, quiet, no access log."""
    return imgconv(
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    )


def start_api(stack: Stack, workers: int = 1, **extra: str) -> tuple[Process, str]:
    """Run `imgconv api` (`workers` processes); returns the process and its base URL once
    ready."""
    port = free_port()
    proc = spawn("api", api_command(port, workers), stack.env(**extra), stack.log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _healthy(url), 30, "API did not start", proc)
    return proc, url


def start_worker(
    stack: Stack, concurrency: int = 1, heartbeat_file: Path | None = None, **extra: str
) -> Process:
    """Run `imgconv worker`; returns once it consumes."""
    node = f"w{uuid.uuid4().hex[:6]}"
    heartbeat = heartbeat_file or stack.log_dir / f"{node}.heartbeat"
    proc = spawn(
        "worker",
        imgconv(
            "worker",
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"{node}@%h",
            "--heartbeat-file",
            str(heartbeat),
        ),
        stack.env(**extra),
        stack.log_dir,
    )
    wait_until(
        lambda: "ready." in proc.output(), 60, f"worker did not start:\n{proc.output()}", proc
    )
    return proc


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    condition: object, timeout: float, message: str, proc: Process | None = None
) -> None:
    """Poll `condition()` until true; fail with `message` after `timeout` seconds."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"{proc.name} exited early:\n{proc.output()}")
        time.sleep(0.1)
    raise AssertionError(f"{message}\n{proc.output() if proc else ''}")


@contextlib.contextmanager
def running(proc: Process) -> Iterator[Process]:
    """Stop the process when the block ends."""
    try:
        yield proc
    finally:
        proc.stop()
