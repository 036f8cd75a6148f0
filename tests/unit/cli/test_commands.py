"""The `imgconv` command as a user meets it: help with an empty environment, one clear line for
a bad setting, and no framework imported before a subcommand runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

IMGCONV = str(Path(sys.executable).parent / "imgconv")
SUBCOMMANDS = ["api", "worker", "worker-liveness", "operator", "migrate", "healthcheck", "version"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`imgconv ARGS` with only `env` in its environment (nothing inherited)."""
    return subprocess.run(
        [IMGCONV, *args], env=env or {}, capture_output=True, text=True, timeout=60, check=False
    )


def test_help_needs_no_environment_and_lists_every_subcommand() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert f"  {name} " in result.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_documents_itself_without_environment(name: str) -> None:
    result = run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: imgconv {name}")
    assert "Traceback" not in result.stderr


def test_help_imports_no_framework_and_reads_no_settings() -> None:
    code = (
        "import sys\n"
        "from imgconv_cli.main import cli\n"
        "try:\n"
        "    cli(['--help'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'fastapi', 'celery', 'kopf', 'sqlalchemy', 'uvicorn', 'redis', 'PIL',\n"
        "         'imgconv_core.settings', 'imgconv_worker.celery_app'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={}, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("command", "env", "variable"),
    [
        (["api"], {"IMGCONV_MODE": "local", "IMGCONV_DATABASE_URL": "not a url"}, "DATABASE_URL"),
        (["worker"], {"IMGCONV_MODE": "local", "IMGCONV_BROKER_URL": "rabbit"}, "BROKER_URL"),
        (["migrate"], {"IMGCONV_MODE": "local", "IMGCONV_REDIS_URL": "http://x"}, "REDIS_URL"),
        (["api"], {}, "IMGCONV_SECRET_KEY"),
        (["worker"], {"IMGCONV_SECRET_KEY": "short"}, "IMGCONV_SECRET_KEY"),
        (["api"], {"IMGCONV_MODE": "local", "IMGCONV_MAX_FILES": "many"}, "IMGCONV_MAX_FILES"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    command: list[str], env: dict[str, str], variable: str
) -> None:
    result = run(*command, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert lines[0].startswith("Error: ")


def test_an_unknown_subcommand_fails_without_a_traceback() -> None:
    result = run("convert-everything")
    assert result.returncode == 2
    assert "No such command 'convert-everything'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_operator_must_be_told_what_to_watch() -> None:
    result = run("operator")
    assert result.returncode == 2
    assert "--namespace" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_gives_up_on_an_unreachable_database_with_one_clear_line() -> None:
    env = {
        "IMGCONV_MODE": "local",
        # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
        "IMGCONV_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:9/none",
    }
    result = run("migrate", "--wait-seconds", "2", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "IMGCONV_DATABASE_URL" in result.stderr.strip().splitlines()[-1]


def test_version_prints_the_installed_version() -> None:
    result = run("version", env={"IMGCONV_BUILD_REVISION": "abc123"})
    assert result.returncode == 0
    assert result.stdout.startswith("imgconv 0.")
    assert result.stdout.strip().endswith("(abc123)")


def test_worker_liveness_fails_without_a_heartbeat(tmp_path: Path) -> None:
    result = run("worker-liveness", "--heartbeat-file", str(tmp_path / "none"))
    assert result.returncode == 1
    assert "no heartbeat" in result.stderr
