"""`make up` for real: embedded PostgreSQL and Redis, then the whole scripts/run_local.py.

Runs as root in CI, which exercises the root path (PostgreSQL as an unprivileged user); the
normal-user path is run too, as `nobody` when the tests run as root. Ports are picked in
20000-30000, away from the machine's own services.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from scripts import run_local
from scripts.run_local import Account, LocalConfig, Supervisor
from tests.support.observability import tool, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "run_local.py"
IS_ROOT = os.geteuid() == 0


def require_root() -> None:
    """Root-only tests fail in CI (which runs as root) rather than skip."""
    if not IS_ROOT:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run these tests as root")
        pytest.skip("the root path needs root")  # outside CI only: with CI=true it failed above


def free_ports(count: int) -> list[int]:
    """Distinct free ports below 32768 that the machine's services do not use."""
    candidates = random.sample(range(20000, 30000), 400)
    ports = [port for port in candidates if run_local.port_is_free(port)][:count]
    assert len(ports) == count
    return ports


def is_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] not in ("Z", "X")


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) for every live process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if is_alive(int(entry.name)):
            table[int(entry.name)] = (ppid, cmdline)
    return table


def descendants(root: int) -> set[int]:
    """Every live process below `root`."""
    table = process_table()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def leftovers(markers: list[str]) -> list[str]:
    """Live processes whose command line mentions one of `markers`."""
    me = os.getpid()
    return [
        f"{pid}: {cmd}"
        for pid, (_, cmd) in process_table().items()
        if pid != me and any(marker in cmd for marker in markers)
    ]


def wait_all_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """Wait for `pids` to end; the ones still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    alive = {pid for pid in pids if is_alive(pid)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {pid for pid in alive if is_alive(pid)}
    return alive


def process_uid(pid: int) -> int:
    """The real uid of `pid`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A private 0700 directory in /tmp for one test's data.

    Not pytest's tmp_path: every pytest session resets /tmp/pytest-of-<user> to 0700, which
    would cut off the unprivileged PostgreSQL user if another session started meanwhile.
    """
    path = Path(tempfile.mkdtemp(prefix="imgconv-local-mode-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_config(data_dir: Path, pg_port: int, redis_port: int) -> LocalConfig:
    """A configuration for the embedded services only."""
    env = {
        "IMGCONV_LOCAL_DATA_DIR": str(data_dir),
        "IMGCONV_LOCAL_PG_PORT": str(pg_port),
        "IMGCONV_LOCAL_REDIS_PORT": str(redis_port),
        "IMGCONV_LOCAL_FRONTEND": "0",
        "IMGCONV_LOCAL_READY_TIMEOUT": "30",
    }
    return run_local.load_config(env, REPO_ROOT)


@contextlib.contextmanager
def running_as(account: Account) -> Iterator[None]:
    """Be `account` (real and effective ids) until the block ends; root comes back after."""
    groups = os.getgroups()
    os.setgroups([])
    os.setresgid(account.gid, account.gid, 0)
    os.setresuid(account.uid, account.uid, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)
        os.setgroups(groups)


def exercise_embedded_services(cfg: LocalConfig, expected_uid: int) -> None:
    """Start PostgreSQL and Redis twice on one data dir: first initdb, then reuse the data."""
    pg_dsn = f"postgresql://{run_local.PG_SUPERUSER}@127.0.0.1:{cfg.pg_port}/imgconv"
    lines: list[str] = []
    sup = Supervisor(write=lines.append)
    try:
        postgres = run_local.start_postgres(sup, cfg)
        redis_url = run_local.start_redis(sup, cfg)
        assert postgres.initialized
        assert postgres.url == f"postgresql+psycopg://imgconv@127.0.0.1:{cfg.pg_port}/imgconv"
        assert process_uid(postgres.pid) == expected_uid
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE marker (note text)")
            conn.execute("INSERT INTO marker VALUES ('kept')")
        redis.Redis.from_url(f"{redis_url}/1").set("marker", "kept")
        first_pids = set(sup.pids())
        for pid in list(first_pids):
            first_pids |= descendants(pid)
    finally:
        sup.stop_all()
    assert not wait_all_gone(first_pids)
    assert any("database system is shut down" in line for line in lines), "no clean shutdown"
    assert any(line.startswith("initdb") for line in lines)
    assert (cfg.data_dir / "postgres" / "PG_VERSION").is_file()
    # As after a crash or a container restart: postmaster.pid names a live process of the
    # postgres user that is not PostgreSQL, which PostgreSQL alone would take for a running one.
    squatter = subprocess.Popen(["sleep", "120"], user=expected_uid if os.geteuid() == 0 else None)
    (cfg.data_dir / "postgres" / "postmaster.pid").write_text(f"{squatter.pid}\n")

    lines.clear()
    sup = Supervisor(write=lines.append)
    try:
        again = run_local.start_postgres(sup, cfg)
        redis_url = run_local.start_redis(sup, cfg)
        assert not again.initialized
        assert not any(line.startswith("initdb") for line in lines)
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT note FROM marker").fetchall() == [("kept",)]
        assert redis.Redis.from_url(f"{redis_url}/1").get("marker") == b"kept"
        second_pids = set(sup.pids())
    finally:
        sup.stop_all()
        squatter.kill()
        squatter.wait()
    assert not wait_all_gone(second_pids)
    assert any("database system is shut down" in line for line in lines)


def test_embedded_services_as_root_run_postgres_unprivileged(scratch: Path) -> None:
    require_root()
    # `scratch` is 0700: start_postgres must open the way for the postgres user.
    cfg = make_config(scratch / "data", *free_ports(2))
    exercise_embedded_services(cfg, expected_uid=Account.named("nobody").uid)
    pgdata = cfg.data_dir / "postgres"
    assert pgdata.stat().st_uid == Account.named("nobody").uid
    assert pgdata.stat().st_mode & 0o777 == 0o700


def test_embedded_services_as_a_normal_user(scratch: Path) -> None:
    cfg = make_config(scratch / "data", *free_ports(2))
    if not IS_ROOT:
        exercise_embedded_services(cfg, expected_uid=os.getuid())
        return
    user = Account.named("nobody")
    cfg.data_dir.mkdir()
    os.chown(cfg.data_dir, user.uid, user.gid)
    for path in (cfg.data_dir, run_local.postgres_bin_dir(), run_local.redis_server_binary()):
        run_local.grant_traversal(path, user, say=lambda _text: None)
    with running_as(user):
        exercise_embedded_services(cfg, expected_uid=user.uid)


def test_a_cluster_of_another_user_is_refused_clearly(scratch: Path) -> None:
    require_root()
    user = Account.named("nobody")
    cfg = make_config(scratch / "data", *free_ports(2))
    (cfg.data_dir / "postgres").mkdir(parents=True)  # owned by root, as if root had made it
    run_local.grant_traversal(cfg.data_dir, user, say=lambda _text: None)
    os.chown(cfg.data_dir, user.uid, user.gid)
    with running_as(user), pytest.raises(run_local.LocalModeError, match="belongs to uid 0"):
        run_local.start_postgres(Supervisor(write=lambda _line: None), cfg)


# ---- the whole `make up`


class LocalRun:
    """scripts/run_local.py in a subprocess, its output collected by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.lines)

    def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        """Wait for `url` to answer 200 while the script keeps running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"run_local exited early:\n{self.output}"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"{url} not ready after {timeout} s:\n{self.output}")

    def stop(self, sig: signal.Signals, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the exit code."""
        self.process.send_signal(sig)
        return self.finish(timeout)

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the script to end by itself."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"run_local did not stop in {timeout} s:\n{self.output}") from None
        self._reader.join(5)
        return code


class MakeUp:
    """Starts `make up` runs on one temporary data dir and cleans up after the test."""

    def __init__(self, scratch: Path) -> None:
        self.pg_port, self.redis_port, self.api_port, self.prometheus_port = free_ports(4)
        self.data_dir = scratch / "data"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.pg_dsn = f"postgresql://imgconv@127.0.0.1:{self.pg_port}/imgconv"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("IMGCONV_") and key != "PYTEST_CURRENT_TEST"
        }
        self.env.update(
            IMGCONV_LOCAL_DATA_DIR=str(self.data_dir),
            IMGCONV_LOCAL_PG_PORT=str(self.pg_port),
            IMGCONV_LOCAL_REDIS_PORT=str(self.redis_port),
            IMGCONV_LOCAL_API_PORT=str(self.api_port),
            IMGCONV_LOCAL_PROMETHEUS_PORT=str(self.prometheus_port),
            IMGCONV_LOCAL_FRONTEND="0",
            IMGCONV_LOCAL_CONCURRENCY="1",
        )
        self.runs: list[LocalRun] = []
        self.markers = [str(scratch), f"127.0.0.1:{self.redis_port}", f"--port {self.api_port}"]

    def start(self) -> LocalRun:
        """Start scripts/run_local.py."""
        run = LocalRun(self.env)
        self.runs.append(run)
        return run

    def cleanup(self) -> list[str]:
        """Stop runs a failed test left behind; the processes that still remain."""
        for run in self.runs:
            if run.process.poll() is None:
                run.process.send_signal(signal.SIGTERM)
                try:
                    run.process.wait(60)
                except subprocess.TimeoutExpired:
                    run.process.kill()
        return leftovers(self.markers)


@pytest.fixture
def make_up(scratch: Path) -> Iterator[MakeUp]:
    """`make up` on a temporary data dir; fails the test if it leaves processes behind."""
    runs = MakeUp(scratch)
    yield runs
    stray = runs.cleanup()
    assert not stray, "processes left behind:\n" + "\n".join(stray)


def _children(run: LocalRun) -> set[int]:
    return descendants(run.process.pid)


def components_scraped(prometheus: str) -> set[str]:
    """The components whose build info the local Prometheus has scraped."""
    query = urllib.parse.urlencode({"query": "imgconv_build_info"})
    try:
        with urllib.request.urlopen(f"{prometheus}/api/v1/query?{query}", timeout=5) as answer:
            body = json.load(answer)
    except (urllib.error.URLError, OSError):
        return set()
    return {sample["metric"]["component"] for sample in body["data"]["result"]}


def test_make_up_stops_on_ctrl_c_reuses_its_data_and_fails_if_a_service_dies(
    make_up: MakeUp,
) -> None:
    first = make_up.start()
    first.wait_ready(make_up.api_url + "/readyz")
    children = _children(first)
    assert len(children) >= 4, first.output  # postgres, redis, worker, api (and their helpers)
    assert f"API    {make_up.api_url}" in first.output
    # Its Prometheus scrapes the API and the worker it started, at the addresses it gave them.
    tool("prometheus")
    prometheus = f"http://127.0.0.1:{make_up.prometheus_port}"
    assert prometheus in first.output  # the banner
    wait_for(
        lambda: components_scraped(prometheus) >= {"api", "worker"},
        90,
        f"make up's Prometheus never scraped the API and the worker:\n{first.output}",
    )
    with psycopg.connect(make_up.pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE marker (note text)")
        conn.execute("INSERT INTO marker VALUES ('kept')")
    assert first.stop(signal.SIGINT) == 0, first.output
    assert not wait_all_gone(children), first.output
    assert "database system is shut down" in first.output
    assert "initdb" in first.output
    assert (make_up.data_dir / "postgres" / "PG_VERSION").is_file()

    second = make_up.start()
    second.wait_ready(make_up.api_url + "/readyz")
    children = _children(second)
    assert "reusing the database cluster" in second.output
    assert "initdb " not in second.output
    with psycopg.connect(make_up.pg_dsn) as conn:
        assert conn.execute("SELECT note FROM marker").fetchall() == [("kept",)]
    # Now a service dies: everything else must stop and `make up` must fail.
    table = process_table()
    (redis_pid,) = [pid for pid in children if f"127.0.0.1:{make_up.redis_port}" in table[pid][1]]
    os.kill(redis_pid, signal.SIGKILL)
    assert second.finish() == 1, second.output
    assert "redis exited unexpectedly (by SIGKILL)" in second.output
    assert not wait_all_gone(children), second.output
    assert "database system is shut down" in second.output


def test_sigterm_during_startup_stops_what_was_started(make_up: MakeUp) -> None:
    run = make_up.start()
    deadline = time.monotonic() + 60
    while not any(line.startswith("redis ") for line in run.lines):
        assert run.process.poll() is None, run.output
        assert time.monotonic() < deadline, run.output
        time.sleep(0.05)
    children = _children(run)
    assert run.stop(signal.SIGTERM) == 0, run.output
    assert not wait_all_gone(children), run.output
    assert "database system is shut down" in run.output
    assert "api " not in run.output


def test_a_second_make_up_on_the_same_data_is_refused(make_up: MakeUp) -> None:
    with run_local.run_lock(make_up.data_dir):
        run = make_up.start()
        assert run.finish() == 1
    assert "already using" in run.output
    assert not (make_up.data_dir / "postgres").exists()
