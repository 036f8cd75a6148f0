"""Status cache entries: what a poll answers from Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from imgconv_core import status_cache
from imgconv_core.jobs import JobStatus, JobView


def view(status: JobStatus) -> JobView:
    job_id = uuid.uuid4()
    return JobView(
        id=job_id,
        status=status,
        filename="a|b.jpg",
        source_format="jpeg",
        target_format="png",
        options={},
        source_bytes=10,
        result_bytes=None,
        width=None,
        height=None,
        source_width=1,
        source_height=1,
        attempts=0,
        created_at=datetime.now(UTC),
        started_at=None,
        finished_at=None,
        error=None,
    )


def test_cache_entry_round_trips_even_with_separators_in_the_body() -> None:
    owner = uuid.uuid4()
    job = view(JobStatus.COMPLETED)
    entry = status_cache.decode_entry(status_cache.encode_entry(owner, job, 7))
    assert entry is not None
    assert entry.owner == owner.hex
    assert entry.version == 7
    assert entry.terminal
    assert entry.etag == '"7"'
    assert JobView.model_validate_json(entry.body) == job
    assert status_cache.decode_entry(status_cache.UNKNOWN) is None
