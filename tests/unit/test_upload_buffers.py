"""How an upload's bytes are held: in memory while small, else in a temporary file, within the
process's budget; and when a slow body is cut off."""

from __future__ import annotations

import hashlib

import pytest

from imgconv_api.uploads import SPILL_BYTES, UploadBudget, UploadedFile, body_deadline
from imgconv_core.errors import Busy
from imgconv_core.settings import Settings


def test_a_small_file_stays_in_memory_and_a_large_one_spills() -> None:
    budget = UploadBudget(limit=10 * SPILL_BYTES, memory_limit=4 * SPILL_BYTES)
    small, large = (UploadedFile(i, f"{i}.png", budget, hashed=True) for i in range(2))
    small.write(b"a" * 1000)
    assert budget.in_memory == 1000
    chunk = b"b" * (SPILL_BYTES // 2)
    for _ in range(3):
        large.write(chunk)
    assert budget.in_memory == 1000  # the large file went to disk with its first bytes
    assert large.read_all() == chunk * 3
    assert large.size == 3 * len(chunk)
    assert large.digest() == hashlib.sha256(chunk * 3).digest()
    small.close()
    large.close()
    assert budget.in_memory == 0


def test_files_spill_once_the_process_holds_its_memory_share() -> None:
    budget = UploadBudget(limit=100 * SPILL_BYTES, memory_limit=3000)
    files = [UploadedFile(i, "f", budget, hashed=False) for i in range(3)]
    for file in files:
        file.write(b"x" * 1200)
    assert budget.in_memory == 2400  # the third did not fit next to the first two
    assert [f.read_all() for f in files] == [b"x" * 1200] * 3
    assert files[2].digest() == hashlib.sha256(b"x" * 1200).digest()  # computed on demand
    for file in files:
        file.close()
    assert budget.in_memory == 0


def test_the_budget_refuses_what_it_cannot_hold() -> None:
    budget = UploadBudget(limit=1000, memory_limit=0)
    budget.reserve(600)
    with pytest.raises(Busy) as refused:
        budget.reserve(401)
    assert refused.value.retry_after >= 1
    budget.reserve(400)
    budget.release(1000)
    budget.reserve(1000)


def test_a_body_must_keep_coming_and_keep_a_minimum_rate() -> None:
    settings = Settings(mode="local", body_timeout_seconds=10, body_min_bytes_per_second=100)
    # Nothing yet: the timeout from the start.
    assert body_deadline(settings, 0, 0, 0) == 10
    # Fast so far: the next piece may take the timeout.
    assert body_deadline(settings, 0, 5, 100_000) == 15
    # A trickle: one byte every few seconds earns almost nothing.
    assert body_deadline(settings, 0, 9, 3) == pytest.approx(10.03)


def test_the_budget_must_hold_one_upload_of_the_largest_size() -> None:
    with pytest.raises(ValueError, match="UPLOAD_BUDGET"):
        Settings(mode="local", max_files=2, max_file_bytes=1000, upload_budget_bytes=1000)
