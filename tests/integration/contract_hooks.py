"""Schemathesis hooks for the contract test: what the OpenAPI document cannot say by itself.

An upload's `file` parts are `format: binary` images: the fuzzer cannot make an image from
that, so this teaches it to (small images in the formats we read). It also makes the stateful
phase's `Replay` link a real replay (see below). Loaded with
SCHEMATHESIS_HOOKS=tests.integration.contract_hooks.
"""

from __future__ import annotations

import io
from typing import Any

import schemathesis
from hypothesis import strategies as st
from PIL import Image
from requests.structures import CaseInsensitiveDict
from schemathesis.transport.serialization import Binary

FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]


@st.composite
def images(draw: st.DrawFn) -> Binary:
    """A small valid image in one of the formats the API reads."""
    fmt = draw(st.sampled_from(FORMATS))
    size = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    colour = draw(st.tuples(*[st.integers(0, 255)] * 3))
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return Binary(out.getvalue())


schemathesis.openapi.format("binary", images())


@schemathesis.hook
def before_load_schema(context: schemathesis.HookContext, raw_schema: dict[str, Any]) -> None:
    """A link that passes the whole request body (`Replay`) sends that body as it was.

    By default schemathesis merges a linked body into a newly generated one, field by field and
    each only most of the time: a replay would almost never be the same upload, whose
    Idempotency-Key is bound to its options and every file, and would only ever meet 409.
    """
    for path in raw_schema.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                for link in response.get("links", {}).values():
                    if link.get("requestBody") == "$request.body":
                        link.setdefault("x-schemathesis", {})["merge_body"] = False


# Accepted stateful uploads that carried an Idempotency-Key: (body, key).
_KEYED_UPLOADS: list[tuple[Any, str]] = []
KEY = "Idempotency-Key"


def _stateful_upload(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> bool:
    meta = getattr(case, "_meta", None)
    phase = getattr(getattr(meta, "phase", None), "name", None)
    operation = context.operation
    return (
        phase == "stateful"
        and operation is not None
        and (operation.method.upper(), operation.path) == ("POST", "/api/v1/jobs")
    )


def _key(case: schemathesis.Case[Any]) -> str | None:
    return case.headers.get(KEY) if case.headers else None


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]
) -> None:
    """In the stateful phase every upload has a key, and the body of an earlier keyed upload
    (the `Replay` link carried it) goes with that upload's key.

    Schemathesis applies a link's optional header about half of the time, and half of its uploads
    have no key: a replay would be rare enough to be missing from a short run. Uploads without a
    key are the other phases' business.
    """
    if not _stateful_upload(context, case):
        return
    earlier = next((key for body, key in _KEYED_UPLOADS if body == case.body), None)
    key = earlier or _key(case) or f"contract-{case.id}"
    if case.headers is None:
        case.headers = CaseInsensitiveDict()
    case.headers[KEY] = key


@schemathesis.hook
def after_call(
    context: schemathesis.HookContext, case: schemathesis.Case[Any], response: Any
) -> None:
    """Remember an accepted keyed upload of the stateful phase, for `before_call`."""
    key = _key(case)
    if _stateful_upload(context, case) and response.status_code == 202 and key:
        _KEYED_UPLOADS.append((case.body, key))
