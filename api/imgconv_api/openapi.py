"""The parts of the OpenAPI document that follow the settings (limits), filled in once."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from imgconv_api.schemas import upload_request_body
from imgconv_core.settings import Settings


def document_settings(app: FastAPI, settings: Settings) -> None:
    """Make `/openapi.json` state this process's limits: the upload body and the longest wait."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            for path in spec["paths"].values():
                for operation in path.values():
                    _fill_in(operation, settings)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _fill_in(operation: dict[str, Any], settings: Settings) -> None:
    if operation.get("operationId") == "createJobs":
        operation["requestBody"] = upload_request_body(settings.max_files)
    if operation.get("operationId") == "getJob":
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "wait":
                parameter["schema"]["maximum"] = settings.long_poll_max_seconds
