"""Pure pieces of the domain: tokens, status cache entries, cursors, settings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from imgconv_core import status_cache
from imgconv_core.db.job_store import decode_cursor
from imgconv_core.errors import InvalidRequest
from imgconv_core.job_ids import job_id_belongs, new_job_id
from imgconv_core.jobs import JobStatus, JobView
from imgconv_core.settings import Settings
from imgconv_core.tokens import hash_token, issue_token, verify_token

SECRET = b"s" * 32


def test_issued_token_verifies_to_its_client() -> None:
    issued = issue_token(SECRET)
    assert verify_token(SECRET, issued.token) == issued.client_id
    assert issued.token_hash == hash_token(issued.token)
    assert issued.token not in issued.token_hash.hex()


def test_token_from_another_secret_or_tampered_is_rejected() -> None:
    issued = issue_token(SECRET)
    assert verify_token(b"x" * 32, issued.token) is None
    middle = issued.token[30]
    flipped = issued.token[:30] + ("A" if middle != "A" else "B") + issued.token[31:]
    assert verify_token(SECRET, flipped) is None


@given(st.text(max_size=80))
def test_arbitrary_strings_are_never_valid_tokens(text: str) -> None:
    assert verify_token(SECRET, text) is None


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


@pytest.mark.parametrize("cursor", ["", "abc", "!!!", "MjAyNi0wMS0wMXxub3QtYS11dWlk"])
def test_malformed_cursors_are_invalid_requests(cursor: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor)


def test_production_mode_refuses_the_default_or_a_short_secret() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(mode="production")
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(mode="production", secret_key="short")
    assert Settings(mode="production", secret_key="k" * 40).mode == "production"
    assert Settings(mode="local").mode == "local"


def test_list_settings_accept_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCONV_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    monkeypatch.setenv("IMGCONV_MODE", "local")
    assert Settings().trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    monkeypatch.setenv("IMGCONV_TRUSTED_PROXIES", "not-an-ip")
    with pytest.raises(ValidationError):
        Settings()


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
