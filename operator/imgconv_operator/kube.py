"""The few Kubernetes API calls the operator makes itself (kopf makes the rest), over aiohttp.

Every call here must be allowed by the chart's operator Role
(charts/imgconv/templates/operator/operator-rbac.yaml); the integration tests check it.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import aiohttp

GROUP = "imgconv.io"
VERSION = "v1alpha1"
PLURAL = "workerautoscalers"

JsonObject = dict[str, Any]


class KubeError(Exception):
    """A Kubernetes API call failed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class NotFoundError(KubeError):
    """The object does not exist."""


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to authenticate, as kopf's login found it."""

    server: str
    token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_path: str | None = None
    ca_data: str | bytes | None = None
    insecure: bool = False
    certificate_path: str | None = None
    certificate_data: str | bytes | None = None
    private_key_path: str | None = None
    private_key_data: str | bytes | None = None

    def headers(self) -> dict[str, str]:
        """Authorization header for this identity."""
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username and self.password:
            raw = f"{self.username}:{self.password}".encode()
            return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
        return {}

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings for https servers (True: library defaults)."""
        if not self.server.startswith("https"):
            return True
        cadata = self.ca_data
        if isinstance(cadata, bytes | str) and cadata:
            # kubeconfig carries base64 PEM; ssl wants the PEM text.
            raw = cadata.encode() if isinstance(cadata, str) else cadata
            cadata = (
                base64.b64decode(raw).decode() if not raw.startswith(b"-----") else raw.decode()
            )
        ctx = ssl.create_default_context(cafile=self.ca_path, cadata=cadata or None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        cert, key = self.certificate_path, self.private_key_path
        with tempfile.TemporaryDirectory() as tmp:
            if self.certificate_data and not cert:
                cert = _write_pem(tmp, "cert.pem", self.certificate_data)
            if self.private_key_data and not key:
                key = _write_pem(tmp, "key.pem", self.private_key_data)
            if cert:
                ctx.load_cert_chain(cert, key)
        return ctx


def _write_pem(folder: str, name: str, data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    if not raw.startswith(b"-----"):
        raw = base64.b64decode(raw)
    path = os.path.join(folder, name)
    with open(path, "wb") as fh:
        fh.write(raw)
    return path


MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


class KubeClient:
    """Typed wrappers around the exact REST calls the autoscaler needs."""

    def __init__(self, credentials: Credentials, timeout: float = 10.0) -> None:
        self._credentials = credentials
        self._session = aiohttp.ClientSession(
            base_url=credentials.server.rstrip("/") + "/",
            headers=credentials.headers(),
            connector=aiohttp.TCPConnector(ssl=credentials.ssl_context()),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    @property
    def credentials(self) -> Credentials:
        """The identity this client was built with."""
        return self._credentials

    async def close(self) -> None:
        """Release the connection pool."""
        await self._session.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JsonObject:
        async with self._session.request(
            method, path.lstrip("/"), json=json, params=params, headers=headers
        ) as resp:
            if resp.status == 404:
                raise NotFoundError(404, f"{method} {path}")
            if resp.status >= 400:
                raise KubeError(resp.status, f"{method} {path}: {await resp.text()}")
            return cast(JsonObject, await resp.json(content_type=None))

    async def get_deployment(self, namespace: str, name: str) -> JsonObject:
        """GET apps/v1 Deployment."""
        return await self._request(
            "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        )

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """PATCH the Deployment's scale subresource (cannot touch anything but replicas)."""
        await self._request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            json={"spec": {"replicas": replicas}},
            headers=MERGE_PATCH,
        )

    async def list_pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[JsonObject]:
        """LIST core/v1 Pods by label selector."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
        data = await self._request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        items = data.get("items") or []
        # Some API emulators ignore the selector; filtering again costs nothing.
        return [
            pod
            for pod in items
            if all(
                (pod.get("metadata", {}).get("labels") or {}).get(k) == v
                for k, v in match_labels.items()
            )
        ]

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        """PATCH annotations onto a Pod."""
        await self._request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            json={"metadata": {"annotations": dict(annotations)}},
            headers=MERGE_PATCH,
        )

    async def list_hpas(self, namespace: str) -> list[JsonObject]:
        """LIST autoscaling/v2 HorizontalPodAutoscalers in a namespace."""
        data = await self._request(
            "GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
        )
        return list(data.get("items") or [])

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """GET a Secret and decode its data."""
        data = await self._request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        decoded = {k: base64.b64decode(v).decode() for k, v in (data.get("data") or {}).items()}
        decoded.update(data.get("stringData") or {})
        return decoded

    async def patch_status(self, namespace: str, name: str, status: JsonObject) -> None:
        """PATCH the WorkerAutoscaler's status subresource."""
        await self._request(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{quote(name)}/status",
            json={"status": status},
            headers=MERGE_PATCH,
        )
