"""Pure parts of the job store: cursors and the job's view, derived from one declaration."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgconv_core.db.job_store import (
    CURSOR_PATTERN,
    VIEW_COLUMNS,
    decode_cursor,
    encode_cursor,
    job_view,
)
from imgconv_core.errors import InvalidRequest
from imgconv_core.jobs import JobStatus, JobView

moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(4000, 1, 1), timezones=st.just(UTC)
)


@given(moments, st.uuids())
def test_a_cursor_points_exactly_after_its_job(created: datetime, job_id: uuid.UUID) -> None:
    cursor = encode_cursor(SimpleNamespace(created_at=created, id=job_id))
    assert re.fullmatch(CURSOR_PATTERN, cursor)
    assert decode_cursor(cursor) == (created, job_id)


@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_string_of_the_documented_shape_is_a_cursor(cursor: str) -> None:
    created, job_id = decode_cursor(cursor)
    assert created.tzinfo is UTC
    assert isinstance(job_id, uuid.UUID)


def test_the_view_reads_each_of_its_fields_from_a_row() -> None:
    names = {column.key for column in VIEW_COLUMNS}
    assert names == (set(JobView.model_fields) - {"error"}) | {"error_code", "error_message"}
    row = SimpleNamespace(
        id=uuid.uuid4(),
        status="failed",
        filename="a.png",
        source_format="png",
        target_format="webp",
        options={"quality": 80},
        source_bytes=10,
        result_bytes=None,
        width=None,
        height=None,
        source_width=3,
        source_height=4,
        attempts=1,
        created_at=datetime.now(UTC),
        started_at=None,
        finished_at=datetime.now(UTC),
        error_code="decode_failed",
        error_message="corrupt",
    )
    view = job_view(row)
    assert view.status is JobStatus.FAILED
    assert view.error is not None
    assert (view.error.code, view.error.message) == ("decode_failed", "corrupt")
    assert view.source_width == 3


@pytest.mark.parametrize("cursor", ["", "abc", "!!!", "MjAyNi0wMS0wMXxub3QtYS11dWlk"])
def test_malformed_cursors_are_invalid_requests(cursor: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor)
