"""A small RBAC evaluator: is an HTTP request to the API server allowed by our manifests?

It follows the Kubernetes authorizer's rules for resource requests (verb from method and URL,
apiGroup, resource[/subresource], resourceNames, the Role's namespace). Discovery URLs
(/api, /apis, /version, group and version documents) are allowed for every authenticated
identity by the built-in system:discovery ClusterRole, so they are accepted here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class ApiCall:
    """One resource request as the authorizer sees it."""

    verb: str
    group: str
    resource: str  # plural, with "/subresource" when there is one
    namespace: str | None
    name: str | None


DISCOVERY = re.compile(r"^/(version|api|apis)(/[^/]+){0,2}/?$")
CORE = re.compile(r"^/api/v1/(?:namespaces/(?P<ns>[^/]+)/)?(?P<rest>.+)$")
GROUPED = re.compile(r"^/apis/(?P<group>[^/]+)/[^/]+/(?:namespaces/(?P<ns>[^/]+)/)?(?P<rest>.+)$")


def parse_call(method: str, path: str, params: Mapping[str, str]) -> ApiCall | None:
    """Map an HTTP request to an ApiCall; None for discovery (non-resource) URLs."""
    match = CORE.match(path)
    core = match is not None
    group = ""
    if match is None:
        match = GROUPED.match(path)
        if match is None:
            if DISCOVERY.match(path):
                return None
            raise ValueError(f"not a Kubernetes API path: {path}")
        group = match.group("group")
    namespace = match.group("ns")
    parts = match.group("rest").split("/")
    if namespace is None and parts == ["namespaces"]:
        resource, name, sub = "namespaces", None, None
    elif namespace is None and parts[0] == "namespaces" and len(parts) >= 2 and core:
        resource, name, sub = "namespaces", parts[1], (parts[2] if len(parts) > 2 else None)
    else:
        resource = parts[0]
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
    method = method.upper()
    watching = params.get("watch") in {"true", "1"}
    if method == "GET":
        verb = "watch" if watching else ("get" if name else "list")
    else:
        verb = {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }[method]
    full = f"{resource}/{sub}" if sub else resource
    return ApiCall(verb, group, full, namespace, name)


@dataclass(frozen=True)
class Rule:
    """One PolicyRule, scoped to a namespace (Role) or cluster-wide (ClusterRole)."""

    groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    names: frozenset[str]
    namespace: str | None

    def allows(self, call: ApiCall) -> bool:
        """Whether this rule grants the call."""
        if self.namespace is not None and call.namespace != self.namespace:
            return False
        if not ({"*", call.group} & self.groups):
            return False
        if not ({"*", call.resource} & self.resources):
            return False
        if not ({"*", call.verb} & self.verbs):
            return False
        # resourceNames cannot restrict list/watch/create/deletecollection of a collection.
        return not self.names or (call.name is not None and call.name in self.names)


def load_rules(paths: Iterable[Path], service_account: str, namespace: str) -> list[Rule]:
    """Rules bound to the service account by the Roles/ClusterRoles in the manifests."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    rules: list[Rule] = []
    for binding in docs:
        if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        subjects = binding.get("subjects") or []
        if not any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == service_account
            and s.get("namespace") == namespace
            for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        bound_ns = binding["metadata"].get("namespace")
        role_ns = bound_ns if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        if role is None:
            raise ValueError(f"{binding['metadata']['name']} refers to missing {ref}")
        scope = bound_ns if binding["kind"] == "RoleBinding" else None
        for rule in role.get("rules") or []:
            rules.append(
                Rule(
                    groups=frozenset(rule.get("apiGroups") or []),
                    resources=frozenset(rule.get("resources") or []),
                    verbs=frozenset(rule.get("verbs") or []),
                    names=frozenset(rule.get("resourceNames") or []),
                    namespace=scope,
                )
            )
    return rules


def denied(calls: Iterable[ApiCall], rules: list[Rule]) -> list[ApiCall]:
    """The calls no rule allows."""
    return [call for call in calls if not any(rule.allows(call) for rule in rules)]
