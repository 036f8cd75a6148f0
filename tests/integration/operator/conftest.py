"""Run the real operator under kopf against kmock, reading the real RabbitMQ on this machine."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import amqp
import kmock as km
import pytest
import pytest_asyncio
from kopf.testing import KopfRunner

from tests.support.helm import write_operator_rbac
from tests.support.rbac import ApiCall, denied, load_rules, parse_call
from tests.support.services import free_port

NAMESPACE = "imgconv"
ROOT = Path(__file__).resolve().parents[3]
MANAGEMENT_URL = os.environ.get("IMGCONV_TEST_RABBITMQ_MANAGEMENT", "http://127.0.0.1:15672")
AMQP_HOST = os.environ.get("IMGCONV_TEST_RABBITMQ_AMQP", "127.0.0.1:5672")
SECRET = "imgconv-broker-credentials"
WORKER_LABELS = {"app.kubernetes.io/name": "imgconv", "app.kubernetes.io/component": "worker"}
AUTOSCALERS = "imgconv.io/v1alpha1/workerautoscalers"


def _management_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 15672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rabbitmq_management() -> str:
    """The real management API; skip without it locally, but never skip in CI."""
    if not _management_up():
        message = "RabbitMQ management API not reachable: run `bash scripts/ensure_services.sh`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)  # outside CI only: with CI=true it failed above
    return MANAGEMENT_URL


class Broker:
    """A queue of our own on the real RabbitMQ, with publish/hold/drain helpers."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.conn = amqp.Connection(host=AMQP_HOST, userid="guest", password="guest")
        self.conn.connect()
        self.channel = self.conn.channel()
        self.channel.queue_declare(queue, durable=False, auto_delete=False)
        self.held: list[amqp.Message] = []
        self._holder: Any = None

    def wait_visible(self, ready: int, timeout: float = 20.0) -> None:
        """Wait until the management API reports `ready` messages (its stats lag up to 5 s)."""
        auth = base64.b64encode(b"guest:guest").decode()
        url = f"{MANAGEMENT_URL}/api/queues/%2F/{self.queue}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            req = urllib.request.Request(url, headers={"Authorization": f"Basic {auth}"})
            with urllib.request.urlopen(req, timeout=5) as resp:  # fixed local URL
                if json.load(resp).get("messages_ready") == ready:
                    return
            time.sleep(0.2)
        raise AssertionError(f"management API never showed {ready} ready messages")

    def publish(self, count: int) -> None:
        """Publish `count` persistent-free messages to the queue."""
        for i in range(count):
            self.channel.basic_publish(
                amqp.Message(f"task {i}"), exchange="", routing_key=self.queue
            )

    def hold_one(self) -> None:
        """Consume one message with prefetch 1 like a Celery worker, and keep it unacked."""
        self._holder = self.conn.channel()
        self._holder.basic_qos(0, 1, False)
        self._holder.basic_consume(self.queue, callback=self.held.append, no_ack=False)
        deadline = time.monotonic() + 10
        while not self.held and time.monotonic() < deadline:
            self.conn.drain_events(timeout=1)
        assert self.held, "no message delivered to the holding consumer"

    def drain_ready(self) -> int:
        """Remove every ready message (basic.get with auto-ack); return how many."""
        taken = 0
        while self.channel.basic_get(self.queue, no_ack=True) is not None:
            taken += 1
        return taken

    def ack_held(self) -> None:
        """Finish the held task."""
        for message in self.held:
            self._holder.basic_ack(message.delivery_tag)
        self.held.clear()

    def close(self) -> None:
        """Delete the queue and disconnect."""
        try:
            if self._holder is not None:
                self._holder.close()  # cancel our consumer before the queue goes away
            self.channel.queue_delete(self.queue)
        finally:
            self.conn.close()


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


def start_probe_worker(queue: str, node: str | None = None) -> subprocess.Popen[bytes]:
    """A real Celery worker (solo pool, imgconv's prefetch/acks settings) on `queue`."""
    args = [
        sys.executable, "-m", "celery", "-A", "tests.integration.operator.celery_probe",
        "worker", "-P", "solo", "-c", "1", "-Q", queue, "-l", "WARNING",
        "--without-heartbeat", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    if node is not None:
        args += ["-n", node]
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, "IMGCONV_PROBE_QUEUE": queue},
    )


def deployment(name: str, replicas: int) -> dict[str, Any]:
    """A complete worker Deployment as the API server would return it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(WORKER_LABELS)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {**WORKER_LABELS, "imgconv.io/deployment": name}},
            "template": {
                "metadata": {"labels": {**WORKER_LABELS, "imgconv.io/deployment": name}},
                "spec": {"containers": [{"name": "worker", "image": "imgconv:test"}]},
            },
        },
    }


def autoscaler(name: str, target: str, source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A WorkerAutoscaler with fast test timings unless overridden."""
    body: dict[str, Any] = {
        "targetRef": {"name": target},
        "source": source,
        "pollIntervalSeconds": 0.5,
        "targetUtilization": 1.0,
        "minReplicas": 1,
        "maxReplicas": 10,
        "scaleDown": {"stabilizationWindowSeconds": 3},
    }
    body.update(spec)
    annotations = body.pop("annotations", {})
    return {
        "apiVersion": "imgconv.io/v1alpha1",
        "kind": "WorkerAutoscaler",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
        "spec": body,
    }


def rabbit_source(queue: str, *, management_url: str = MANAGEMENT_URL, **extra: Any) -> Any:
    """A source block reading `queue` with credentials from the test Secret."""
    return {
        "rabbitmq": {
            "managementUrl": management_url,
            "vhost": "/",
            "queue": queue,
            "credentialsSecret": {"name": SECRET},
            **extra,
        }
    }


class Cluster:
    """The kmock API server plus helpers to seed, read and wait."""

    def __init__(self, mock: km.KubernetesEmulator) -> None:
        self.mock = mock
        self.url = str(mock.url).rstrip("/")

    def seed(self, resource: str, obj: dict[str, Any]) -> None:
        """Put an object into the emulator before the operator starts."""
        meta = obj["metadata"]
        self.mock.objects[resource, meta.get("namespace"), meta["name"]] = obj

    def get(self, resource: str, name: str) -> dict[str, Any]:
        """The latest state of an object."""
        return dict(self.mock.objects[resource, NAMESPACE, name].raw)

    def history(self, resource: str, name: str) -> list[dict[str, Any]]:
        """Every stored version of an object, oldest first."""
        obj = self.mock.objects[resource, NAMESPACE, name]
        return [v.raw for v in obj.history if v is not None]

    def replicas(self, name: str) -> int:
        """The Deployment's spec.replicas."""
        return int(self.get("apps/v1/deployments", name)["spec"]["replicas"])

    def status(self, name: str) -> dict[str, Any]:
        """The WorkerAutoscaler's status."""
        return dict(self.get(AUTOSCALERS, name).get("status") or {})

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        """One condition of the WorkerAutoscaler's status (empty if absent)."""
        for cond in self.status(name).get("conditions") or []:
            if cond["type"] == kind:
                return dict(cond)
        return {}

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Events the operator posted (optionally only those about one object)."""
        found = []
        for req in list(self.mock):
            if req.method == "POST" and req.url.path.endswith("/events"):
                data = req.data or {}
                if name is None or (data.get("involvedObject") or {}).get("name") == name:
                    found.append(data)
        return found

    def cost(self, pod: str) -> int:
        """A pod's controller.kubernetes.io/pod-deletion-cost (0 when unset)."""
        obj = self.mock.objects["v1/pods", NAMESPACE, pod]
        meta = obj.last.raw.get("metadata") or {}
        return int(
            (meta.get("annotations") or {}).get("controller.kubernetes.io/pod-deletion-cost", "0")
        )

    def pod_names(self) -> list[str]:
        """Live pods (not deleted), oldest first."""
        names = []
        for resource, namespace, name in list(self.mock.objects):
            if str(resource) == "v1/pods" or getattr(resource, "plural", None) == "pods":
                obj = self.mock.objects[resource, namespace, name]
                if not obj.deleted:
                    names.append(name)
        return names

    def calls(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, path, query) of every request the operator made."""
        return [
            (str(getattr(r.method, "value", r.method)), r.url.path, dict(r.url.query))
            for r in list(self.mock)
        ]

    async def create(self, resource: str, obj: dict[str, Any]) -> None:
        """POST an object like kubectl would (the operator sees it on its watch)."""
        group_version, plural = resource.rsplit("/", 1)
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        url = f"{self.url}{prefix}/namespaces/{NAMESPACE}/{plural}"
        async with aiohttp.ClientSession() as session, session.post(url, json=obj) as resp:
            assert resp.status < 300, await resp.text()

    async def delete(self, resource: str, name: str) -> None:
        """DELETE an object."""
        group_version, plural = resource.rsplit("/", 1)
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        url = f"{self.url}{prefix}/namespaces/{NAMESPACE}/{plural}/{name}"
        async with aiohttp.ClientSession() as session, session.delete(url) as resp:
            assert resp.status < 300, await resp.text()


async def eventually(
    check: Callable[[], bool], within: float = 20.0, what: str = "condition"
) -> None:
    """Poll until `check()` holds (the operator works asynchronously)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


class ApiServer(km.KubernetesEmulator):
    """kmock plus the bookkeeping a real API server does on create and kopf relies on.

    Names from metadata.generateName (kopf's events), uid, resourceVersion, generation and
    creationTimestamp.
    """

    async def _handle(self, request: km.Request) -> Any:
        if request.action == km.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:8]}"
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("resourceVersion", "1")
            meta.setdefault("generation", 1)
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return await super()._handle(request)


def _declare_resources(mock: km.KubernetesEmulator) -> None:
    info = km.ResourceInfo
    mock.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs={"list"})
    mock.resources[AUTOSCALERS] = info(
        kind="WorkerAutoscaler",
        singular="workerautoscaler",
        namespaced=True,
        verbs={"get", "list", "watch", "patch", "create", "delete"},
        subresources={"status"},
    )
    mock.resources["kopf.dev/v1/kopfpeerings"] = info(
        kind="KopfPeering",
        singular="kopfpeering",
        namespaced=True,
        verbs={"get", "list", "watch", "patch"},
    )
    mock.resources["apps/v1/deployments"] = info(
        kind="Deployment", namespaced=True, verbs={"get", "patch"}, subresources={"scale"}
    )
    mock.resources["v1/pods"] = info(
        kind="Pod", namespaced=True, verbs={"list", "patch", "create", "delete"}
    )
    mock.resources["v1/secrets"] = info(kind="Secret", namespaced=True, verbs={"get"})
    mock.resources["v1/events"] = info(kind="Event", namespaced=True, verbs={"create"})
    mock.resources["autoscaling/v2/horizontalpodautoscalers"] = info(
        kind="HorizontalPodAutoscaler", namespaced=True, verbs={"list"}
    )


@pytest_asyncio.fixture
async def cluster(
    kmock: km.KubernetesEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    """kmock with our resources, the peering object, the broker Secret and a kubeconfig."""
    _declare_resources(kmock)
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
    operator_calls: list[ApiCall] = [c for c in calls if c is not None and not _made_by_test(c)]
    assert operator_calls, "the operator made no API calls at all"
    assert denied(operator_calls, rules) == []


def _made_by_test(call: ApiCall) -> bool:
    # The test itself creates/deletes autoscalers and plays the ReplicaSet (pods).
    return (call.resource == "workerautoscalers" and call.verb in {"create", "delete"}) or (
        call.resource == "pods" and call.verb in {"create", "delete"}
    )
