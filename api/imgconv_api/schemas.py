"""Response bodies of the v1 API (the Job itself is `imgconv_core.jobs.JobView`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from imgconv_core.jobs import JobView


class TokenOut(BaseModel):
    token: str


class JobsCreated(BaseModel):
    jobs: list[JobView]


class JobPage(BaseModel):
    items: list[JobView]
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


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "Missing or invalid bearer token",
        404: "No such job for this client",
        409: "Conflict with the job's state",
        413: "Too large (file, request or image)",
        415: "Not an image we can read",
        422: "Invalid request",
        429: "Rate limited (see Retry-After)",
    }.items()
}
