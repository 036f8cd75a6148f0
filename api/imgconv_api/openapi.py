"""The parts of the OpenAPI document FastAPI cannot write by itself, filled in once: the limits
of this process's settings, and our error shape where FastAPI assumes its own."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from imgconv_api.schemas import upload_request_body
from imgconv_core.settings import Settings


def document_settings(app: FastAPI, settings: Settings) -> None:
    """Make `/openapi.json` state this process's limits (the upload body, the longest wait) and
    our error shape for invalid requests."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            for path in spec["paths"].values():
                for operation in path.values():
                    _fill_in(operation, settings)
            # Validation errors are answered in our shape (imgconv_api.errors), not FastAPI's.
            for name in ("HTTPValidationError", "ValidationError"):
                spec.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


INVALID_REQUEST = {
    "description": "Invalid request",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}


PRESIGNED_REDIRECT = {
    "description": "The image is in S3: fetch it from the presigned URL in Location "
    "(IMGCONV_S3_PRESIGNED_DOWNLOADS)",
    "headers": {
        "Location": {
            "description": "A presigned URL",
            "required": True,
            "schema": {"type": "string"},
        }
    },
}


def _fill_in(operation: dict[str, Any], settings: Settings) -> None:
    if "422" in operation["responses"]:
        operation["responses"]["422"] = INVALID_REQUEST
    if operation.get("operationId") == "createJobs":
        operation["requestBody"] = upload_request_body(settings.max_files)
    if (
        operation.get("operationId") in ("getResult", "getSource")
        and settings.s3_presigned_downloads
    ):
        operation["responses"]["307"] = PRESIGNED_REDIRECT
    if operation.get("operationId") == "getJob":
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "wait":
                parameter["schema"]["maximum"] = settings.long_poll_max_seconds
