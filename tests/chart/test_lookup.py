"""Generated Secrets are kept on upgrade: helm itself renders the chart against an API server
(the kmock emulator) that already holds the Secrets of an earlier install, and `lookup` hands
their values back instead of generating new ones."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import kmock as km
import pytest
import yaml

from tests.chart.objects import find, name_of
from tests.support.helm import CHART, NAMESPACE, RELEASE, helm, render

pytestmark = pytest.mark.asyncio


class ApiServer(km.KubernetesEmulator):
    """kmock as helm needs it: a version the chart's kubeVersion accepts, and core discovery
    that says `v1` (kmock answers `/v1`, which client-go cannot map)."""

    async def _serve_server_version(self, request: Any) -> Any:
        return {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "platform": "linux/amd64"}

    async def _serve_version(self, request: Any) -> Any:
        payload: dict[str, Any] = await super()._serve_version(request)  # type: ignore[assignment]
        payload["groupVersion"] = str(payload["groupVersion"]).lstrip("/")
        return payload


def plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith(("s", "x")):
        return lower + "es"
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


def installed_secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    """A Secret as an earlier `helm install` of this release left it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {
                "meta.helm.sh/release-name": RELEASE,
                "meta.helm.sh/release-namespace": NAMESPACE,
            },
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def decoded(docs: list[dict[str, Any]], component: str) -> dict[str, str]:
    secret = find(docs, "Secret", name_of(component))
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


@pytest.mark.kmock(cls=ApiServer)
async def test_upgrades_keep_the_generated_secrets(
    kmock: km.KubernetesEmulator, tmp_path: Path
) -> None:
    values = {"storage": {"backend": "s3", "seaweedfs": {"enabled": True}}}
    for doc in render(values):  # discovery for every kind the chart renders
        resource = f"{doc['apiVersion']}/{plural(doc['kind'])}"
        kmock.resources[resource] = km.ResourceInfo(
            kind=doc["kind"], namespaced=True, verbs={"get", "list"}
        )
    kept = {
        "postgres": {"password": b"the-password-the-volume-has"},
        "rabbitmq": {"username": b"imgconv", "password": b"the-broker-password"},
        "seaweedfs": {"access-key-id": b"KEYIDOFTHESEAWEEDFS1", "secret-access-key": b"s" * 40},
    }
    for component, data in kept.items():
        name = name_of(component)
        kmock.objects["v1/secrets", NAMESPACE, name] = installed_secret(name, data)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: k, cluster: {{server: '{str(kmock.url).rstrip('/')}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: k, context: {cluster: k, user: u}}]\ncurrent-context: k\n"
    )

    def upgrade_render() -> list[dict[str, Any]]:
        # helm's own lookup, ownership check and resource mapping against the server.
        done = helm(
            "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--dry-run=server", "--disable-openapi-validation", "--kubeconfig", str(kubeconfig),
            "--show-only", "templates/secrets.yaml",
            "--set", "storage.backend=s3", "--set", "storage.seaweedfs.enabled=true",
        )  # fmt: skip
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    first, second = [await asyncio.to_thread(upgrade_render) for _ in range(2)]
    for docs in (first, second):
        assert decoded(docs, "postgres") == {"password": "the-password-the-volume-has"}
        assert decoded(docs, "rabbitmq") == {
            "username": "imgconv",
            "password": "the-broker-password",
        }
        assert decoded(docs, "seaweedfs") == {
            "access-key-id": "KEYIDOFTHESEAWEEDFS1",
            "secret-access-key": "s" * 40,
        }
    # What the cluster did not have yet is generated (and would be kept from then on).
    assert len(decoded(first, "redis")["password"]) == 32
    assert decoded(first, "redis") != decoded(second, "redis")
    looked_up = {r.url.path for r in list(kmock) if getattr(r.method, "value", r.method) == "GET"}
    for component in ("secret-key", "postgres", "redis", "rabbitmq", "seaweedfs"):
        path = f"/api/v1/namespaces/{NAMESPACE}/secrets/{name_of(component)}"
        assert path in looked_up
