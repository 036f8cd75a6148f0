"""Render the chart with the real helm binary (`scripts/install_helm.sh` puts it in .tools/bin)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "imgconv"
TOOLS_BIN = ROOT / ".tools" / "bin"
RELEASE = "imgconv"
NAMESPACE = "imgconv"


class RenderError(Exception):
    """helm refused to render; the message is helm's stderr."""


@cache
def _located() -> str | None:
    for candidate in (TOOLS_BIN / "helm", shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def helm_binary() -> str:
    """The helm binary; without one the test fails under CI=true and is skipped elsewhere."""
    found = _located()
    if found is None:
        message = "helm not found: run `bash scripts/install_helm.sh` (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)  # outside CI only: with CI=true it failed above
    return found


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with `args`; a non-zero exit raises RenderError with its stderr when `check`."""
    done = subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and done.returncode != 0:
        raise RenderError(done.stderr.strip())
    return done


def _args(
    values: Mapping[str, Any],
    *,
    values_file: Path,
    show_only: Iterable[str],
    kube_version: str,
    api_versions: Iterable[str],
    namespace: str,
    release: str,
    include_crds: bool,
) -> list[str]:
    values_file.write_text(json.dumps(values))  # JSON is YAML
    args = [
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
        "--values",
        str(values_file),
    ]
    for version in api_versions:
        args += ["--api-versions", version]
    for template in show_only:
        args += ["--show-only", template]
    if include_crds:
        args.append("--include-crds")
    return args


@cache
def _render_text(key: str) -> str:
    options = json.loads(key)
    with tempfile.TemporaryDirectory() as tmp:
        args = _args(
            options.pop("values"),
            values_file=Path(tmp) / "values.json",
            **options,
        )
        return helm(*args).stdout


def render_text(
    values: Mapping[str, Any] | None = None,
    *,
    show_only: Iterable[str] = (),
    kube_version: str = "1.30.0",
    api_versions: Iterable[str] = (),
    namespace: str = NAMESPACE,
    release: str = RELEASE,
    include_crds: bool = False,
) -> str:
    """`helm template` of the chart with `values` over values.yaml, as YAML text (cached)."""
    key = json.dumps(
        {
            "values": dict(values or {}),
            "show_only": list(show_only),
            "kube_version": kube_version,
            "api_versions": list(api_versions),
            "namespace": namespace,
            "release": release,
            "include_crds": include_crds,
        },
        sort_keys=True,
    )
    return _render_text(key)


def render(values: Mapping[str, Any] | None = None, **options: Any) -> list[dict[str, Any]]:
    """The rendered objects (see render_text for the options)."""
    return [doc for doc in yaml.safe_load_all(render_text(values, **options)) if doc]


def write_operator_rbac(directory: Path, *, secret_name: str) -> Path:
    """The chart's operator RBAC rendered as `imgconv-operator` in namespace `imgconv`, with
    `get` on `secret_name`, written to a file (what the operator integration tests check)."""
    text = render_text(
        {
            "fullnameOverride": "imgconv",
            "rabbitmq": {"auth": {"existingSecret": secret_name}},
        },
        show_only=["templates/operator/operator-rbac.yaml"],
    )
    path = directory / "operator-rbac.yaml"
    path.write_text(text)
    return path
