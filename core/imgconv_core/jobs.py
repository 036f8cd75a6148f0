"""Job states and the public representation of a job (API and worker)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

# Celery contract between the API (publisher) and the worker (consumer).
CONVERT_TASK = "imgconv.convert"
CONVERSIONS_QUEUE = "conversions"


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        """Whether the job can no longer change (besides being deleted)."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})
# A live job can still change; the transactions that move it say from where in their WHERE.
LIVE_STATUSES = frozenset(JobStatus) - TERMINAL_STATUSES


class JobError(BaseModel):
    code: str
    message: str


class JobView(BaseModel):
    """A job as clients see it (the API's `Job` adds its links); the status cache stores it
    serialized. The one declaration of a job's public fields: the columns read follow it."""

    id: uuid.UUID
    status: JobStatus
    filename: str
    source_format: str
    target_format: str
    options: dict[str, Any]
    source_bytes: int
    result_bytes: int | None
    width: int | None
    height: int | None
    source_width: int
    source_height: int
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None
