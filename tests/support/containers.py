"""Real containers for tests: the project's images built with podman (on Debian stand-in bases,
since no registry can be pulled here) and run as the chart runs them: read-only root, uid 10001,
a tmpfs at /tmp only, host networking, configuration from IMGCONV_* variables."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

import pytest

from tests.support.services import ROOT, Stack, amqp_url

ENGINE = "podman"
TAG = os.environ.get("IMGCONV_IMAGE_TAG", "dev")
IMAGE = f"localhost/imgconv:{TAG}"
FRONTEND_IMAGE = f"localhost/imgconv-frontend:{TAG}"
UID = 10001
# Production mode, as deployed: the secret must be real (32+ characters).
SECRET = "container-test-secret-" + "x" * 32


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS`; output captured as text."""
    return subprocess.run(
        [ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=check
    )


@lru_cache(maxsize=1)
def ensure_images() -> None:
    """Build both images once per test session (the engine's layer cache makes it quick)."""
    if shutil.which(ENGINE) is None:
        message = "podman is not installed (bash scripts/images/install_podman.sh, as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    bases = os.environ.get("IMGCONV_TEST_IMAGE_BASES", "standin")
    build = subprocess.run(
        ["bash", "scripts/images/build.sh"],
        cwd=ROOT,
        env={**os.environ, "IMGCONV_IMAGE_BASES": bases, "IMGCONV_IMAGE_TAG": TAG},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(f"make images failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}")


def container_env(stack: Stack, **extra: str) -> dict[str, str]:
    """Only IMGCONV_* settings reach a container, as the chart's ConfigMap and Secret give them."""
    env = {key: value for key, value in stack.env().items() if key.startswith("IMGCONV_")}
    env.update(IMGCONV_MODE="production", IMGCONV_SECRET_KEY=SECRET)
    env["IMGCONV_BROKER_URL"] = amqp_url(stack.vhost)
    env.update(extra)
    return env


@dataclass
class Container:
    """A running container of the test session."""

    name: str

    def logs(self) -> str:
        """Everything the container printed."""
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (as its user)."""
        return podman("exec", self.name, *command, timeout=timeout, check=False)

    def state(self) -> str:
        """'running', 'exited', ..."""
        return podman("inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()

    def exit_code(self) -> int:
        """The exit code of a stopped container."""
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout)

    def stop(self, timeout: int = 30) -> None:
        """`podman stop`: SIGTERM to PID 1, SIGKILL after `timeout` seconds."""
        podman("stop", "--time", str(timeout), self.name, timeout=timeout + 60, check=False)

    def remove(self) -> None:
        """Remove the container, running or not."""
        podman("rm", "--force", "--time", "0", self.name, check=False)


def run_container(
    image: str, args: list[str], env: Mapping[str, str], *, name: str = "imgconv-test"
) -> Container:
    """Start a detached container the way the chart runs its pods."""
    unique = f"{name}-{uuid.uuid4().hex[:8]}"
    flags = [
        "--detach",
        "--name",
        unique,
        "--network",
        "host",
        "--read-only",
        "--read-only-tmpfs=false",  # nothing writable but what is mounted: /tmp
        "--tmpfs",
        "/tmp:rw,size=256m,mode=1777",
        "--user",
        f"{UID}:{UID}",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
    ]
    for key, value in env.items():
        flags += ["--env", f"{key}={value}"]
    podman("run", *flags, image, *args)
    return Container(unique)


@contextlib.contextmanager
def started(container: Container) -> Iterator[Container]:
    """Remove the container when the block ends; print its logs if the block failed."""
    try:
        yield container
    except BaseException:
        print(f"--- logs of {container.name} ---\n{container.logs()[-6000:]}")
        raise
    finally:
        container.remove()
