"""The CRDs have one copy, the chart's crds/, and helm really ships and installs it."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import yaml

from tests.support.crds import CRD_DIR
from tests.support.crds import SCHEMA_DIR as THIRD_PARTY_SCHEMAS
from tests.support.helm import ROOT, helm, render

CRD_NAMES = {"workerautoscalers.imgconv.io", "kopfpeerings.kopf.dev"}
# Other projects' CRDs (prometheus-operator's) are kept only as offline validation schemas.


def tracked_yaml() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.yaml", "*.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed]


def test_each_crd_is_defined_once_in_the_repository_in_the_charts_crds() -> None:
    definitions: dict[str, list[Path]] = {}
    for path in tracked_yaml():
        if path.parent == THIRD_PARTY_SCHEMAS:
            continue
        if "CustomResourceDefinition" not in path.read_text(errors="replace"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                definitions.setdefault(doc["metadata"]["name"], []).append(path)
    assert set(definitions) == CRD_NAMES
    for name, paths in definitions.items():
        assert [p.parent for p in paths] == [CRD_DIR], f"{name} defined in {paths}"


def test_helm_package_ships_the_crds_byte_for_byte(tmp_path: Path) -> None:
    helm("package", str(CRD_DIR.parent), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("imgconv-*.tgz")
    with tarfile.open(archive) as tar:
        for path in CRD_DIR.glob("*.yaml"):
            member = tar.extractfile(f"imgconv/crds/{path.name}")
            assert member is not None
            assert member.read() == path.read_bytes()


def test_install_applies_the_crds_and_templates_never_repeat_them() -> None:
    with_crds = render({}, include_crds=True)
    names = {d["metadata"]["name"] for d in with_crds if d["kind"] == "CustomResourceDefinition"}
    assert names == CRD_NAMES
    assert not [d for d in render({}) if d["kind"] == "CustomResourceDefinition"]


def test_the_k8s_docs_point_at_the_one_copy() -> None:
    readme = (ROOT / "k8s" / "README.md").read_text()
    assert "charts/imgconv/crds/" in readme
    assert (ROOT / "charts/imgconv/crds").is_dir()
