"""Job states, transitions and the public representation of a job (API and worker)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

# Celery contract between the API (publisher) and the worker (consumer).
CONVERT_TASK = "imgconv.convert"
SWEEP_TASK = "imgconv.sweep"
CONVERSIONS_QUEUE = "conversions"
API_PREFIX = "/api/v1"


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

# Which status may follow which; processing -> queued is a re-queue after a lost worker.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED, JobStatus.CANCELED}),
    JobStatus.PROCESSING: frozenset(
        {JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    """Whether `current -> new` is a legal job transition."""
    return new in TRANSITIONS[current]


class JobError(BaseModel):
    code: str
    message: str


class JobLinks(BaseModel):
    self: str
    result: str
    source: str


class JobView(BaseModel):
    """A job as clients see it (the API's `Job` schema; the status cache stores it serialized)."""

    model_config = ConfigDict(title="Job")

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
    links: JobLinks


def job_links(job_id: uuid.UUID) -> JobLinks:
    """Relative links of a job's resources."""
    base = f"{API_PREFIX}/jobs/{job_id}"
    return JobLinks(self=base, result=f"{base}/result", source=f"{base}/source")
