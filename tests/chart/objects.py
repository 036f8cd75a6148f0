"""Finding things in rendered manifests: objects by kind and name, pod templates, containers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.support.helm import RELEASE

Obj = dict[str, Any]
POD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"}


def name_of(component: str) -> str:
    """The object name of a component in the test release (release "imgconv" = chart name)."""
    return f"{RELEASE}-{component}"


def find(docs: list[Obj], kind: str, name: str | None = None) -> Obj:
    """The one object of `kind` (and `name`); fails when there is none or several."""
    hits = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(hits) == 1, (
        f"{len(hits)} {kind} named {name}: {[d['metadata']['name'] for d in hits]}"
    )
    return hits[0]


def kinds(docs: list[Obj], kind: str) -> list[Obj]:
    """Every object of `kind`."""
    return [d for d in docs if d["kind"] == kind]


def has(docs: list[Obj], kind: str, name: str) -> bool:
    """Whether an object of `kind` named `name` was rendered."""
    return any(d["kind"] == kind and d["metadata"]["name"] == name for d in docs)


def pod_template(obj: Obj) -> Obj:
    """The pod template ({metadata, spec}) of a workload, or the Pod itself."""
    if obj["kind"] == "Pod":
        return {"metadata": obj["metadata"], "spec": obj["spec"]}
    template: Obj = obj["spec"]["template"]
    return template


def pods(docs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(object, pod template) for every workload and Pod."""
    for doc in docs:
        if doc["kind"] in POD_KINDS or doc["kind"] == "Pod":
            yield doc, pod_template(doc)


def all_containers(pod_spec: Obj) -> list[Obj]:
    """Init and app containers of a pod spec."""
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def container(obj: Obj, name: str) -> Obj:
    """The container `name` of a workload (init containers included)."""
    spec = pod_template(obj)["spec"]
    hits = [c for c in all_containers(spec) if c["name"] == name]
    assert len(hits) == 1, f"no container {name} in {obj['metadata']['name']}"
    return hits[0]


def env_of(c: Obj) -> dict[str, Obj]:
    """A container's env entries by name."""
    return {e["name"]: e for e in c.get("env", [])}


def label(doc: Obj) -> str:
    """kind/name, for test ids and messages."""
    return f"{doc['kind']}/{doc['metadata']['name']}"
