"""`make up` (scripts/run_local.py): configuration, frontend staleness, accounts, supervision.

The supervisor tests run real (tiny Python) child processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import run_local
from scripts.run_local import (
    Account,
    ChildExited,
    ChildSpec,
    LocalModeError,
    StopRequested,
    Supervisor,
)

PY = sys.executable


def is_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] not in ("Z", "X")


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait until `pid` has ended; False if it is still there after `timeout` s."""
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A socket listening on some free port below 32768."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    for port in range(23100, 23400):
        try:
            sock.bind(("127.0.0.1", port))
            break
        except OSError:
            continue
    sock.listen()
    yield sock
    sock.close()


# ---- ports and configuration


def test_explicit_port_is_used_when_free(listening: socket.socket) -> None:
    busy = listening.getsockname()[1]
    free = next(p for p in range(busy + 1, busy + 100) if run_local.port_is_free(p))
    env = {"IMGCONV_LOCAL_API_PORT": str(free)}
    assert run_local.resolve_port(env, "IMGCONV_LOCAL_API_PORT", 8000) == free


def test_explicit_busy_port_is_an_error(listening: socket.socket) -> None:
    busy = listening.getsockname()[1]
    with pytest.raises(LocalModeError, match="already in use"):
        run_local.resolve_port({"X_PORT": str(busy)}, "X_PORT", 8000)


def test_default_port_moves_up_past_a_busy_one(listening: socket.socket) -> None:
    busy = listening.getsockname()[1]
    chosen = run_local.resolve_port({}, "X_PORT", busy)
    assert chosen > busy
    assert run_local.port_is_free(chosen)
    assert not run_local.port_is_free(busy)


def test_default_port_search_stays_below_the_ephemeral_range() -> None:
    tried: list[int] = []

    def nothing_free(port: int) -> bool:
        tried.append(port)
        return False

    with pytest.raises(LocalModeError, match="no free port"):
        run_local.resolve_port({}, "X_PORT", 32760, is_free=nothing_free)
    assert tried
    assert max(tried) < 32768


@pytest.mark.parametrize("value", ["eighty", "0", "70000"])
def test_bad_port_value_is_an_error(value: str) -> None:
    with pytest.raises(LocalModeError, match="X_PORT"):
        run_local.resolve_port({"X_PORT": value}, "X_PORT", 8000)


def test_config_defaults_start_embedded_services(tmp_path: Path) -> None:
    cfg = run_local.load_config({}, repo_root=tmp_path)
    assert cfg.external_database_url is None
    assert cfg.needs_redis
    assert cfg.data_dir == tmp_path / ".data"
    assert cfg.frontend_enabled
    assert cfg.host == "127.0.0.1"
    for port in (cfg.pg_port, cfg.redis_port, cfg.api_port, cfg.frontend_port):
        assert 1024 < port < 32768


def test_config_uses_given_services_and_skips_embedded_ones(tmp_path: Path) -> None:
    env = {
        "IMGCONV_DATABASE_URL": "postgresql+psycopg://u@db:5432/x",
        "IMGCONV_REDIS_URL": "redis://cache:6379/0",
        "IMGCONV_BROKER_URL": "amqp://guest:guest@mq:5672//",
        "IMGCONV_LOCAL_FRONTEND": "0",
        "IMGCONV_LOCAL_DATA_DIR": str(tmp_path / "state"),
    }
    cfg = run_local.load_config(env, repo_root=tmp_path)
    assert cfg.external_database_url is not None
    assert not cfg.needs_redis
    assert not cfg.frontend_enabled
    assert cfg.data_dir == tmp_path / "state"
    assert cfg.external_broker_url == "amqp://guest:guest@mq:5672//"


def test_config_still_runs_redis_when_only_the_broker_lacks_a_url(tmp_path: Path) -> None:
    cfg = run_local.load_config({"IMGCONV_REDIS_URL": "redis://cache:6379/0"}, tmp_path)
    assert cfg.needs_redis


def test_config_rejects_a_bad_flag(tmp_path: Path) -> None:
    with pytest.raises(LocalModeError, match="IMGCONV_LOCAL_FRONTEND"):
        run_local.load_config({"IMGCONV_LOCAL_FRONTEND": "maybe"}, tmp_path)


def test_children_run_in_local_mode_with_the_chosen_urls() -> None:
    env = run_local.child_environment(
        {"PATH": "/bin", "IMGCONV_MODE": "production"},
        "postgresql+psycopg://imgconv@127.0.0.1:15432/imgconv",
        "redis://127.0.0.1:16379/0",
        "redis://127.0.0.1:16379/1",
    )
    assert env["IMGCONV_MODE"] == "local"
    assert env["IMGCONV_DATABASE_URL"].endswith(":15432/imgconv")
    assert env["IMGCONV_REDIS_URL"].endswith("/0")
    assert env["IMGCONV_BROKER_URL"].endswith("/1")
    assert env["PATH"] == "/bin"


# ---- frontend


def _frontend(tmp_path: Path) -> Path:
    frontend = tmp_path / "frontend"
    (frontend / "app").mkdir(parents=True)
    (frontend / "package.json").write_text("{}")
    (frontend / "package-lock.json").write_text("{}")
    (frontend / "app" / "page.tsx").write_text("export default function Page() {}")
    return frontend


def _touch_later(path: Path, content: str | None = None) -> None:
    if content is not None:
        path.write_text(content)
    later = time.time() + 5
    os.utime(path, (later, later))


def test_npm_install_runs_once_and_again_after_the_lock_changes(tmp_path: Path) -> None:
    frontend = _frontend(tmp_path)
    assert run_local.npm_install_needed(frontend)
    (frontend / "node_modules").mkdir()
    _touch_later(frontend / "node_modules" / ".package-lock.json", "{}")
    assert not run_local.npm_install_needed(frontend)
    later = time.time() + 10
    os.utime(frontend / "package-lock.json", (later, later))
    assert run_local.npm_install_needed(frontend)


def test_fingerprint_follows_sources_not_dependencies_tests_or_build_output(
    tmp_path: Path,
) -> None:
    frontend = _frontend(tmp_path)
    before = run_local.frontend_fingerprint(frontend)
    for ignored in ("node_modules", ".next", "tests"):
        (frontend / ignored).mkdir()
        (frontend / ignored / "file.js").write_text("x")
    (frontend / "tsconfig.tsbuildinfo").write_text("{}")
    assert run_local.frontend_fingerprint(frontend) == before
    _touch_later(frontend / "app" / "page.tsx", "export default function Page() { return 1 }")
    assert run_local.frontend_fingerprint(frontend) != before


def test_build_is_redone_when_missing_or_stale(tmp_path: Path) -> None:
    frontend = _frontend(tmp_path)
    stamp = tmp_path / "frontend-build.json"
    assert run_local.frontend_build_needed(frontend, stamp)  # never built
    (frontend / ".next").mkdir()
    (frontend / ".next" / "BUILD_ID").write_text("abc")
    assert run_local.frontend_build_needed(frontend, stamp)  # built, but not by us
    stamp.write_text(json.dumps({"fingerprint": run_local.frontend_fingerprint(frontend)}))
    assert not run_local.frontend_build_needed(frontend, stamp)
    (frontend / "app" / "new-page.tsx").write_text("export default function New() {}")
    assert run_local.frontend_build_needed(frontend, stamp)


def test_the_web_ui_runs_only_when_wanted_present_and_npm_is_there(tmp_path: Path) -> None:
    cfg = run_local.load_config({}, repo_root=tmp_path)
    assert "no frontend/package.json" in (run_local.why_no_frontend(cfg, "/usr/bin/npm") or "")
    _frontend(tmp_path)
    assert run_local.why_no_frontend(cfg, "/usr/bin/npm") is None
    missing_npm = run_local.why_no_frontend(cfg, None) or ""
    assert "npm is not on PATH" in missing_npm
    assert "Node.js" in missing_npm
    off = run_local.load_config({"IMGCONV_LOCAL_FRONTEND": "0"}, repo_root=tmp_path)
    assert "IMGCONV_LOCAL_FRONTEND=0" in (run_local.why_no_frontend(off, "/usr/bin/npm") or "")


# ---- accounts and permissions


def test_a_normal_user_runs_postgres_as_themselves(tmp_path: Path) -> None:
    assert run_local.postgres_account(tmp_path / "pg", "nobody", euid=1000) is None


def test_root_runs_postgres_as_the_unprivileged_user(tmp_path: Path) -> None:
    account = run_local.postgres_account(tmp_path / "pg", "nobody", euid=0)
    assert account is not None
    assert account.name == "nobody"
    assert account.uid != 0


def test_root_keeps_the_owner_of_an_existing_cluster(tmp_path: Path) -> None:
    pgdata = tmp_path / "pg"
    pgdata.mkdir()
    owner = pgdata.stat().st_uid
    account = run_local.postgres_account(pgdata, "nobody", euid=0)
    if owner == 0:  # a root-owned dir is not a cluster anyone could have run: use the default
        assert account is not None
        assert account.name == "nobody"
    else:
        assert account == Account.with_uid(owner)


def test_root_is_refused_as_the_postgres_user(tmp_path: Path) -> None:
    with pytest.raises(LocalModeError, match="must not be root"):
        run_local.postgres_account(tmp_path / "pg", "root", euid=0)


def test_unknown_postgres_user_is_reported(tmp_path: Path) -> None:
    with pytest.raises(LocalModeError, match="no such user"):
        run_local.postgres_account(tmp_path / "pg", "no-such-user-imgconv", euid=0)


def test_closed_directories_on_the_way_are_found(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    outer.chmod(0o700)
    inner.chmod(0o755)
    stranger = Account.named("nobody")
    assert outer.stat().st_uid != stranger.uid
    blocked = run_local.untraversable_dirs(inner, stranger)
    assert outer in blocked
    assert inner not in blocked
    outer.chmod(0o700 | stat.S_IXOTH)
    assert outer not in run_local.untraversable_dirs(inner, stranger)


def test_a_tree_closed_by_a_strict_umask_is_opened_for_reading_and_running(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "pginstall"
    (tree / "bin").mkdir(parents=True)
    (tree / "share").mkdir()
    program = tree / "bin" / "postgres"
    data = tree / "share" / "timezone"
    program.write_text("#!/bin/sh\n")
    data.write_text("UTC")
    program.chmod(0o700)
    data.chmod(0o600)
    for directory in (tree / "bin", tree / "share", tree):
        directory.chmod(0o700)
    assert run_local.open_tree_for_others(tree) == 4
    assert stat.S_IMODE(program.stat().st_mode) == 0o705
    assert stat.S_IMODE(data.stat().st_mode) == 0o604
    assert stat.S_IMODE((tree / "bin").stat().st_mode) == 0o705
    assert run_local.open_tree_for_others(tree) == 0


def test_process_names_tell_a_live_process_from_a_gone_one() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5  # Popen may return just before the exec
        while run_local.process_name(sleeper.pid) != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run_local.process_name(sleeper.pid) == "sleep"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert run_local.process_name(sleeper.pid) is None


def test_a_postmaster_pid_of_a_gone_process_is_removed(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    (tmp_path / "postmaster.pid").write_text(f"{finished.pid}\n{tmp_path}\n")
    assert run_local.clear_stale_postmaster_pid(tmp_path)
    assert not (tmp_path / "postmaster.pid").exists()
    assert not run_local.clear_stale_postmaster_pid(tmp_path)


# ---- supervision, with real processes


def _script(code: str) -> list[str]:
    return [PY, "-u", "-c", textwrap.dedent(code)]


def _spec(name: str, code: str, stop: run_local.StopPlan = run_local.GENTLE_STOP) -> ChildSpec:
    return ChildSpec(name=name, argv=_script(code), cwd=Path.cwd(), stop=stop)


# Prints "ready", then on SIGTERM prints "<name> stopping" and exits 0.
POLITE = """
import signal, sys, time
def bye(*_):
    print(sys.argv[1] if len(sys.argv) > 1 else "child", "stopping")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready")
while True:
    time.sleep(0.1)
"""


def _polite(name: str) -> ChildSpec:
    return ChildSpec(name=name, argv=[*_script(POLITE), name], cwd=Path.cwd())


def test_step_output_is_prefixed_with_the_child_name() -> None:
    lines: list[str] = []
    sup = Supervisor(write=lines.append)
    sup.run_step(_spec("greeter", "print('hello'); print('world', flush=True)"))
    assert "greeter  | hello" in lines
    assert "greeter  | world" in lines


def test_a_failing_step_raises_with_its_exit_code() -> None:
    sup = Supervisor(write=lambda _line: None)
    with pytest.raises(LocalModeError, match=r"broken failed \(exit code 3\)"):
        sup.run_step(_spec("broken", "import sys; sys.exit(3)"))


def test_children_stop_in_reverse_start_order() -> None:
    lines: list[str] = []
    sup = Supervisor(write=lines.append)
    for name in ("first", "second", "third"):
        sup.start(_polite(name))
    sup.wait_until(lambda: sum("| ready" in line for line in lines) == 3, 20, "children")
    pids = sup.pids()
    sup.stop_all()
    stopping = [line.split("|")[1].split()[0] for line in lines if line.endswith(" stopping")]
    assert stopping == ["third", "second", "first"]
    assert all(wait_gone(pid) for pid in pids)


def test_a_dead_service_is_reported() -> None:
    sup = Supervisor(write=lambda _line: None)
    sup.start(_spec("shortlived", "import sys; sys.exit(7)"))
    with pytest.raises(ChildExited, match=r"shortlived exited unexpectedly \(exit code 7\)"):
        sup.wait_until(lambda: False, 20, "never")
    sup.stop_all()


def test_a_stop_request_interrupts_waiting() -> None:
    sup = Supervisor(write=lambda _line: None)
    sup.start(_polite("service"))
    sup.request_stop(signal.SIGINT)
    with pytest.raises(StopRequested, match="SIGINT"):
        sup.watch()
    sup.stop_all()


def test_a_child_ignoring_sigterm_is_killed_with_its_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = f"""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open({str(pid_file)!r}, "w").write(str(grandchild.pid))
    print("ready")
    time.sleep(600)
    """
    lines: list[str] = []
    sup = Supervisor(write=lines.append)
    pid = sup.start(_spec("stubborn", code, stop=((signal.SIGTERM, 0.5),)))
    sup.wait_until(lambda: any("| ready" in line for line in lines), 20, "stubborn")
    grandchild = int(pid_file.read_text())
    started = time.monotonic()
    sup.stop_all()
    assert time.monotonic() - started < 5
    assert wait_gone(pid)
    assert wait_gone(grandchild)
    assert any("killing its process group" in line for line in lines)


def test_children_go_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    # SIGKILL leaves the supervisor no chance to clean up; the kernel must end the children.
    driver = f"""
    import sys, time
    sys.path.insert(0, {str(Path(run_local.__file__).parents[1])!r})
    from pathlib import Path
    from scripts.run_local import ChildSpec, Supervisor
    sup = Supervisor()
    pid = sup.start(ChildSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"],
                              Path.cwd()))
    print(pid, flush=True)
    time.sleep(600)
    """
    proc = subprocess.Popen(_script(driver), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    assert is_alive(child)
    proc.kill()
    proc.wait()
    assert wait_gone(child)
