"""Fixtures: the real operator under kopf against kmock, reading the real RabbitMQ on this
machine (the pieces live in tests/support/kube_emulator.py)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import kmock as km
import pytest
import pytest_asyncio
from kopf.testing import KopfRunner

from tests.support.helm import write_operator_rbac
from tests.support.kube_emulator import (
    MANAGEMENT_URL,
    NAMESPACE,
    SECRET,
    Broker,
    Cluster,
    declare_resources,
    eventually,
    made_by_test,
    management_up,
)
from tests.support.rbac import ApiCall, denied, load_rules, parse_call
from tests.support.services import free_port


@pytest.fixture(scope="session")
def rabbitmq_management() -> str:
    """The real management API; skip without it locally, but never skip in CI."""
    if not management_up():
        message = "RabbitMQ management API not reachable: run `bash scripts/ensure_services.sh`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)  # outside CI only: with CI=true it failed above
    return MANAGEMENT_URL


@pytest.fixture
def broker(rabbitmq_management: str) -> Iterator[Callable[[], Broker]]:
    """Factory of uniquely named queues, deleted after the test."""
    made: list[Broker] = []

    def make() -> Broker:
        made.append(Broker(f"imgconv-test-{uuid.uuid4().hex[:12]}"))
        return made[-1]

    yield make
    for b in made:
        b.close()


@pytest_asyncio.fixture
async def cluster(
    kmock: km.KubernetesEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    """kmock with our resources, the peering object, the broker Secret and a kubeconfig."""
    declare_resources(kmock)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: kmock, cluster: {{server: '{str(kmock.url).rstrip('/')}'}}}}]\n"
        "users: [{name: operator, user: {token: test-token}}]\n"
        "contexts: [{name: kmock, context: {cluster: kmock, user: operator}}]\n"
        "current-context: kmock\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    c = Cluster(kmock)
    c.seed(
        "kopf.dev/v1/kopfpeerings",
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "imgconv-operator", "namespace": NAMESPACE},
        },
    )
    creds = {k: base64.b64encode(b"guest").decode() for k in ("username", "password")}
    c.seed(
        "v1/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": NAMESPACE},
            "data": creds,
        },
    )
    yield c


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """One metrics port per test process (the HTTP server starts once per process)."""
    return free_port()


OperatorRun = Callable[[], Awaitable[KopfRunner]]


@pytest.fixture(scope="session")
def rbac_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The chart's operator Role (the one source of the operator's RBAC), rendered."""
    return [write_operator_rbac(tmp_path_factory.mktemp("rbac"), secret_name=SECRET)]


@pytest_asyncio.fixture
async def operator(
    cluster: Cluster, metrics_port: int, monkeypatch: pytest.MonkeyPatch, rbac_files: list[Path]
) -> AsyncIterator[dict[str, Any]]:
    """Start the operator under kopf; on exit check its output and that RBAC allowed every call."""
    monkeypatch.setenv("IMGCONV_OPERATOR_METRICS_PORT", str(metrics_port))
    liveness = free_port()
    runner = KopfRunner(
        [
            "run",
            "-m",
            "imgconv_operator.handlers",
            "--namespace",
            NAMESPACE,
            f"--liveness=http://127.0.0.1:{liveness}/healthz",
            "--verbose",
        ],
        timeout=60,
    )
    # kopf reconfigures the root and asyncio loggers; put them back for the tests after us.
    root, aio = logging.getLogger(), logging.getLogger("asyncio")
    saved = (root.level, root.handlers[:], aio.propagate, aio.handlers[:])
    await asyncio.to_thread(runner.__enter__)
    info = {"liveness": liveness, "metrics": metrics_port, "runner": runner}
    try:
        # Custom resources must be created after kopf's watch started (kmock limitation).
        await eventually(
            lambda: any(
                path.endswith("/workerautoscalers") and q.get("watch") == "true"
                for _, path, q in cluster.calls()
            ),
            what="kopf's watch on workerautoscalers",
        )
        yield info
    finally:
        await asyncio.to_thread(runner.__exit__, None, None, None)
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        aio.propagate = saved[2]
        aio.handlers[:] = saved[3]
    assert runner.exception is None
    assert "Traceback" not in runner.output, runner.output[-4000:]
    rules = load_rules(rbac_files, "imgconv-operator", NAMESPACE)
    calls = [parse_call(m, p, q) for m, p, q in cluster.calls()]
    operator_calls: list[ApiCall] = [c for c in calls if c is not None and not made_by_test(c)]
    assert operator_calls, "the operator made no API calls at all"
    assert denied(operator_calls, rules) == []
