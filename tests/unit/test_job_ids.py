"""Job ids: bound to the client that uploaded them."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from imgconv_core.job_ids import job_id_belongs, new_job_id

SECRET = b"s" * 32


def test_job_ids_are_bound_to_their_client() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    job_id = new_job_id(SECRET, alice)
    assert job_id.version == 8
    assert job_id.variant == uuid.RFC_4122
    assert job_id_belongs(SECRET, alice, job_id)
    assert not job_id_belongs(SECRET, bob, job_id)
    assert not job_id_belongs(b"other" * 8, alice, job_id)
    assert new_job_id(SECRET, alice) != job_id


@given(st.uuids())
def test_random_ids_do_not_belong_to_anyone(job_id: uuid.UUID) -> None:
    assert not job_id_belongs(SECRET, uuid.UUID(int=1), job_id)
