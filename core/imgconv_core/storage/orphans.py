"""Finding objects in the bucket that no job needs (the sweeper deletes them).

Objects are written before the rows that refer to them commit, so a crash in between (an
upload's source, a worker's result) leaves an object behind; so does a result written while its
job was being canceled. Each sweep pass reads a page of the bucket's keys from where the last
pass stopped (wrapping at the end), looks their jobs up in one query, and deletes what
`orphaned_keys` picks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from imgconv_core.db.models import Job
from imgconv_core.jobs import JobStatus
from imgconv_core.settings import StorageBackend
from imgconv_core.storage.base import parse_blob_key


@dataclass(frozen=True)
class JobState:
    status: JobStatus
    storage: StorageBackend


def orphaned_keys(
    objects: Iterable[tuple[str, datetime]],
    jobs: Mapping[uuid.UUID, JobState],
    written_before: datetime,
) -> list[str]:
    """The keys among `objects` (key, last modified) that no job needs: objects older than
    `written_before` (the grace period: younger ones may belong to a row about to commit)
    whose job is gone, keeps its images elsewhere, was canceled, or failed (its result).
    Keys that are not ours (`<job id>/<role>`) are left alone."""
    orphans = []
    for key, modified in objects:
        parsed = parse_blob_key(key)
        if parsed is None or modified >= written_before:
            continue
        job_id, role = parsed
        job = jobs.get(job_id)
        if (
            job is None
            or job.storage is not StorageBackend.S3
            or job.status is JobStatus.CANCELED
            or (role == "result" and job.status is JobStatus.FAILED)
        ):
            orphans.append(key)
    return orphans


def job_states(tx: Session, keys: Iterable[str]) -> dict[uuid.UUID, JobState]:
    """The status and storage of the jobs these keys belong to (missing jobs are absent)."""
    ids = {parsed[0] for key in keys if (parsed := parse_blob_key(key)) is not None}
    if not ids:
        return {}
    rows = tx.execute(select(Job.id, Job.status, Job.storage).where(Job.id.in_(ids))).all()
    return {row.id: JobState(JobStatus(row.status), StorageBackend(row.storage)) for row in rows}
