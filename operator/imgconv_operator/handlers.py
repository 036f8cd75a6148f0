"""kopf handlers: the operator's wiring to kopf. Run with `kopf run -m imgconv_operator.handlers`.

Settings, login and this process's API client; one loop per WorkerAutoscaler that runs a
reconcile (reconcile.py), posts its events and writes its status when it changed; the restore
on delete; the liveness probe. Decisions are not made here: scaling.py and reconcile.py.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import aiohttp
import kopf

from imgconv_operator import metrics
from imgconv_operator.kube import (
    GROUP,
    PLURAL,
    VERSION,
    Credentials,
    KubeClient,
    KubeError,
    NotFoundError,
)
from imgconv_operator.reconcile import AutoscalerState, Connections, Reconciler, older_rivals

log = logging.getLogger(__name__)

PEERING_NAME = "imgconv-operator"
ERROR_RETRY_SECONDS = 5.0


class OperatorState:
    """Process-wide state: the identity kopf logged in with and our API client for it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything (a fresh start when the operator runs repeatedly in one process)."""
        self.credentials: Credentials | None = None
        self.running = 0
        self._client: KubeClient | None = None
        self._retired: list[KubeClient] = []

    def client(self) -> KubeClient:
        """The API client for the current credentials (rebuilt after kopf re-logs in)."""
        if self.credentials is None:
            raise kopf.TemporaryError("not logged in yet", delay=1)
        if self._client is None or self._client.credentials != self.credentials:
            if self._client is not None:
                # Other daemons may be mid-request on it: close it at cleanup, not now.
                self._retired.append(self._client)
            self._client = KubeClient(self.credentials)
        return self._client

    async def close(self) -> None:
        """Close every client this process opened."""
        for client in [*self._retired, *([self._client] if self._client else [])]:
            await client.close()
        self._client, self._retired = None, []


STATE = OperatorState()
_metrics_served = False


def _credentials(info: kopf.ConnectionInfo) -> Credentials:
    def text(value: Any) -> str | None:
        return (
            None
            if value is None
            else os.fsdecode(value)
            if isinstance(value, bytes)
            else str(value)
        )

    return Credentials(
        server=info.server,
        token=info.token,
        username=info.username,
        password=info.password,
        ca_path=text(info.ca_path),
        ca_data=info.ca_data,
        insecure=bool(info.insecure),
        certificate_path=text(info.certificate_path),
        certificate_data=info.certificate_data,
        private_key_path=text(info.private_key_path),
        private_key_data=info.private_key_data,
    )


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Peering, quiet events, annotation-only persistence, metrics endpoint."""
    global _metrics_served
    STATE.reset()
    settings.peering.name = os.environ.get("IMGCONV_OPERATOR_PEERING", PEERING_NAME)
    settings.peering.mandatory = True  # two operators must never scale the same Deployment
    settings.posting.level = logging.WARNING  # events are for scaling and problems, not logs
    settings.posting.reporting_component = "imgconv-operator"
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.scanning.disabled = True  # no CRD watching: RBAC stays narrow
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    port = int(os.environ.get("IMGCONV_OPERATOR_METRICS_PORT", "9090"))
    if port and not _metrics_served:
        metrics.serve(port)
        _metrics_served = True


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else kubeconfig; remember it for our own API calls."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        STATE.credentials = _credentials(info)
    return info


@kopf.on.cleanup()
async def close_clients(**_: Any) -> None:
    """Close HTTP sessions on exit."""
    await STATE.close()


@kopf.on.probe(id="autoscalers")
def running_autoscalers(**_: Any) -> int:
    """Liveness detail: how many autoscaler loops run in this process."""
    return STATE.running


@kopf.index(GROUP, VERSION, PLURAL)
def autoscalers_by_target(
    namespace: str | None, name: str | None, spec: kopf.Spec, meta: kopf.Meta, **_: Any
) -> dict[tuple[str | None, str], tuple[str, str]]:
    """(namespace, target Deployment) -> (creation time, autoscaler name), to find rivals."""
    target = str((spec.get("targetRef") or {}).get("name") or "")
    return {(namespace, target): (str(meta.get("creationTimestamp") or ""), str(name))}


def rivals(index: kopf.Index[Any, Any], namespace: str, name: str, spec: kopf.Spec) -> list[str]:
    """Older autoscalers (creation time, then name) that target the same Deployment."""
    target = str((spec.get("targetRef") or {}).get("name") or "")
    return older_rivals(index.get((namespace, target), []), name)


@kopf.daemon(GROUP, VERSION, PLURAL, id="autoscale", cancellation_timeout=15.0)
async def autoscale(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str | None,
    name: str | None,
    **kwargs: Any,
) -> None:
    """One loop per WorkerAutoscaler: reconcile, write status, sleep pollIntervalSeconds."""
    assert namespace is not None
    assert name is not None
    index: kopf.Index[Any, Any] = kwargs["autoscalers_by_target"]  # kopf passes indexes by name
    state = AutoscalerState(original_replicas=status.get("originalReplicas"))
    connections = Connections()
    written: dict[str, Any] | None = None
    STATE.running += 1
    try:
        while not stopped:
            started = time.monotonic()
            interval = ERROR_RETRY_SECONDS
            try:
                kube = STATE.client()
                reconciler = Reconciler(kube, namespace, name, connections)
                # body/spec/meta are live views in kopf daemons: edits apply on the next loop.
                result = await reconciler.run(
                    state,
                    dict(spec),
                    dict(meta.annotations),
                    meta.get("generation"),
                    started,
                    rivals=rivals(index, namespace, name, spec),
                )
                state, interval = result.state, result.next_in
                for event in result.events:
                    kopf.event(body, type=event.type, reason=event.reason, message=event.message)
                if result.status != written:  # an idle queue should not mean a write every poll
                    try:
                        await kube.patch_status(namespace, name, result.status)
                    except NotFoundError:
                        return  # the autoscaler itself is gone
                    written = result.status
            except (KubeError, kopf.TemporaryError, aiohttp.ClientError, OSError) as exc:
                log.warning("%s/%s: reconcile failed, retrying: %r", namespace, name, exc)
            except Exception:
                # A bug must not stop autoscaling for good: log it loudly and keep looping.
                log.exception("%s/%s: reconcile crashed, retrying", namespace, name)
            finally:
                elapsed = time.monotonic() - started
                metrics.observe_reconcile(namespace, name, elapsed)
            await stopped.wait(interval)
    finally:
        STATE.running -= 1
        await connections.close()


@kopf.on.delete(GROUP, VERSION, PLURAL, id="restore")
async def restore(
    spec: kopf.Spec,
    status: kopf.Status,
    body: kopf.Body,
    namespace: str | None,
    name: str | None,
    **_: Any,
) -> None:
    """Optionally put the Deployment back to the count it had before autoscaling."""
    assert namespace is not None
    assert name is not None
    metrics.forget(namespace, name)
    original = status.get("originalReplicas")
    target = (spec.get("targetRef") or {}).get("name")
    if not spec.get("restoreReplicasOnDelete") or original is None or not target:
        return
    try:
        await STATE.client().scale_deployment(namespace, target, int(original))
    except NotFoundError:
        return  # nothing to restore
    kopf.event(body, type="Normal", reason="Restored", message=f"{target} back to {original}")
