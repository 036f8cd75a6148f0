"""Response bodies of the v1 API and the parts of its OpenAPI document written by hand."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from imgconv_core.images.formats import ACCEPTED_TARGETS, MIME_TYPES, SOURCE_FORMATS
from imgconv_core.jobs import JobView
from imgconv_core.uploads import MAX_DIMENSION


class JobLinks(BaseModel):
    self: str
    result: str
    source: str


class Job(JobView):
    """A job as the API answers it: the core's view plus the paths of its resources."""

    model_config = ConfigDict(title="Job")

    links: JobLinks


class TokenOut(BaseModel):
    token: str


class JobsCreated(BaseModel):
    jobs: list[Job]


class JobPage(BaseModel):
    items: list[Job]
    next_cursor: str | None


class Limits(BaseModel):
    max_file_bytes: int
    max_files: int
    max_pixels: int
    max_frames: int
    formats: list[str]


class Stats(BaseModel):
    queue_depth: int | None
    workers_online: int | None
    jobs_by_status: dict[str, int]
    limits: Limits


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorDetail


_ERROR_DESCRIPTIONS = {
    304: "Not modified (If-None-Match)",
    401: "Missing or invalid bearer token",
    404: "No such job for this client",
    408: "The request body arrived too slowly",
    409: "Conflict with the job's state, or an Idempotency-Key used for another upload",
    410: "Gone: the image, or the jobs of an earlier upload with this Idempotency-Key",
    413: "Too large (file, request, image or number of files)",
    415: "Not an image we can read",
    422: "Invalid request",
    429: "Rate limited (see Retry-After)",
    503: "Busy (this server holds as many uploads as it can), or the database or the image "
    "store is out of reach (see Retry-After)",
}

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of an operation (each in the `ErrorBody` shape)."""
    documented: dict[int | str, dict[str, Any]] = {}
    # Every operation reads or writes PostgreSQL: each may answer 503 database_unavailable.
    for status in sorted({*statuses, 503}):
        entry: dict[str, Any] = {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]}
        if status in (429, 503):
            entry["headers"] = RETRY_AFTER
        documented[status] = entry
    return documented


ETAG = {
    "ETag": {
        "description": "The entity tag; send it back as If-None-Match",
        "required": True,
        "schema": {"type": "string"},
    }
}

NOT_MODIFIED: dict[str, Any] = {"description": _ERROR_DESCRIPTIONS[304], "headers": ETAG}

# The formats a download may have: the sources we read, the results we write.
IMAGE_CONTENT = {
    mime: {"schema": {"type": "string", "format": "binary"}}
    for mime in sorted(set(MIME_TYPES.values()))
}

DOWNLOAD: dict[str, Any] = {
    "description": "The image bytes",
    "content": IMAGE_CONTENT,
    "headers": {
        **ETAG,
        "Content-Disposition": {
            "description": "attachment, with the file name",
            "required": True,
            "schema": {"type": "string"},
        },
    },
}


# The media types of the images an upload may hold (any other is refused 415).
SOURCE_MEDIA_TYPES = sorted(MIME_TYPES[source] for source in SOURCE_FORMATS)


def upload_request_body(max_files: int) -> dict[str, Any]:
    """The multipart/form-data body of `POST /jobs`."""
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "format"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": max_files,
                            "items": {"type": "string", "format": "binary"},
                            "description": "The images, one part each: "
                            + ", ".join(SOURCE_MEDIA_TYPES)
                            + " (their content decides their format, not their name or "
                            "Content-Type; anything else is refused with 415)",
                        },
                        "format": {
                            "type": "string",
                            "enum": list(ACCEPTED_TARGETS),
                            "examples": ["webp"],
                        },
                        "quality": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 100,
                            "examples": [80],
                        },
                        "max_width": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_DIMENSION,
                            "examples": [1920],
                        },
                        "max_height": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_DIMENSION,
                        },
                        "strip_metadata": {"type": "boolean", "default": True},
                    },
                },
                "encoding": {"file": {"contentType": ", ".join(SOURCE_MEDIA_TYPES)}},
            }
        },
    }
