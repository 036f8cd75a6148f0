"""The frontend's `Job` type (frontend/lib/api/types.ts) says what the API's `Job` schema says:
the same fields, each required or not, nullable or not. A drift is otherwise silent: TypeScript
trusts the type, and the UI mishandles the field at run time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from imgconv_api.main import create_app
from imgconv_core.settings import Settings

TYPES_TS = Path(__file__).resolve().parents[2] / "frontend" / "lib" / "api" / "types.ts"

# `name: type;` or `name?: type;` directly inside the interface (comments skipped).
_MEMBER = re.compile(r"^\s*(\w+)(\?)?\s*:\s*(.+?);\s*$")


def interface_fields(source: str, name: str) -> dict[str, tuple[bool, bool]]:
    """An interface's members as {name: (required, nullable)}; a simple parse of flat members."""
    match = re.search(rf"^export interface {name} \{{\n(.*?)^\}}", source, re.M | re.S)
    assert match, f"no `export interface {name}` in {TYPES_TS}"
    fields = {}
    for line in match.group(1).splitlines():
        member = _MEMBER.match(line)
        if member and not line.lstrip().startswith(("/", "*")):
            field, optional, ts_type = member.groups()
            nullable = "null" in (part.strip() for part in ts_type.split("|"))
            fields[field] = (optional is None, nullable)
    return fields


def schema_fields(schema: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
    """An OpenAPI object schema's properties as {name: (required, nullable)}."""
    required = set(schema.get("required", []))
    return {
        field: (field in required, {"type": "null"} in prop.get("anyOf", []))
        for field, prop in schema["properties"].items()
    }


@pytest.fixture(scope="module")
def api_job_schema() -> dict[str, Any]:
    spec = create_app(Settings(mode="local"), run_sweeper=False).openapi()
    schema: dict[str, Any] = spec["components"]["schemas"]["Job"]
    return schema


def test_the_frontend_job_type_matches_the_api_job_schema(api_job_schema: dict[str, Any]) -> None:
    api = schema_fields(api_job_schema)
    frontend = interface_fields(TYPES_TS.read_text(), "Job")
    only_frontend, only_api = set(frontend) - set(api), set(api) - set(frontend)
    assert (only_frontend, only_api) == (set(), set()), "fields in one only"
    differing = {f: (frontend[f], api[f]) for f in api if frontend[f] != api[f]}
    assert not differing, f"(required, nullable) as (frontend, API): {differing}"


def test_the_parse_sees_optional_and_nullable_members() -> None:
    source = "export interface T {\n  /** x */\n  a: number;\n  b?: string | null;\n}\n"
    assert interface_fields(source, "T") == {"a": (True, False), "b": (False, True)}
