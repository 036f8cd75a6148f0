"""How an upload's bytes are held: in memory while small, else in a temporary file, within the
process's budget; and when a slow body is cut off."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from imgconv_api.uploads import (
    SPILL_BYTES,
    UploadBudget,
    UploadedFile,
    UploadForm,
    body_deadline,
    storing_cost,
)
from imgconv_core.db.job_store import StreamableSource
from imgconv_core.errors import Busy
from imgconv_core.settings import Settings


def form_of(budget: UploadBudget, files: int) -> UploadForm:
    form = UploadForm(fields={}, files=[], budget=budget)
    for index in range(files):
        form.files.append(UploadedFile(index, f"{index}.png", form, hashed=index == 0))
    return form


@pytest.mark.asyncio
async def test_a_small_file_stays_in_memory_and_a_large_one_spills() -> None:
    budget = UploadBudget(limit=10 * SPILL_BYTES, memory_limit=100 * SPILL_BYTES, storing_wait=30)
    form = form_of(budget, 2)
    small, large = form.files
    small.write(b"a" * 1000)
    assert budget.in_memory == 1000
    chunk = b"b" * (SPILL_BYTES // 2)
    for _ in range(3):
        large.write(chunk)
    assert (small.spilled, large.spilled) == (False, True)
    assert budget.in_memory == 1000  # the large file took its first bytes along to disk
    await form.take_storing_room()
    with large.contents() as data:
        assert data == chunk * 3
    assert budget.storing == storing_cost(len(chunk) * 3)  # held until the upload is done
    assert large.digest() == hashlib.sha256(chunk * 3).digest()
    form.close()
    assert (budget.in_memory, budget.storing) == (0, 0)


def test_stores_that_stream_get_the_temporary_file_itself() -> None:
    """S3 reads an upload in pieces: a spilled file reaches it as its temporary file, never as
    bytes in memory; a small one as a file over its bytes."""
    budget = UploadBudget(limit=10 * SPILL_BYTES, memory_limit=100 * SPILL_BYTES, storing_wait=30)
    small, large = form_of(budget, 2).files
    small.write(b"a" * 1000)
    large.write(b"b" * (2 * SPILL_BYTES))
    assert isinstance(large, StreamableSource)
    with large.stream() as file:
        assert file is large._disk
        assert file.read() == b"b" * (2 * SPILL_BYTES)
    with small.stream() as file:
        assert file.read() == b"a" * 1000
    small.close()
    large.close()


@pytest.mark.asyncio
async def test_files_spill_once_the_process_holds_its_memory_share() -> None:
    budget = UploadBudget(
        limit=100 * SPILL_BYTES, memory_limit=6000, storing_wait=30
    )  # 3000 for arriving files
    form = form_of(budget, 3)
    for file in form.files:
        file.write(b"x" * 1200)
    assert budget.in_memory == 2400  # the third did not fit next to the first two
    assert [file.spilled for file in form.files] == [False, False, True]
    await form.take_storing_room()
    for file in form.files:
        with file.contents() as data:
            assert data == b"x" * 1200
    assert form.files[2].digest() == hashlib.sha256(b"x" * 1200).digest()  # computed on demand
    form.close()
    assert budget.in_memory == 0


def test_the_budget_refuses_what_it_cannot_hold() -> None:
    budget = UploadBudget(limit=1000, memory_limit=0, storing_wait=30)
    budget.reserve(600)
    with pytest.raises(Busy) as refused:
        budget.reserve(401)
    assert refused.value.retry_after >= 1
    with pytest.raises(Busy):
        budget.check_room(401)
    budget.check_room(400)
    assert budget.held == 600  # checking takes nothing
    budget.reserve(400)
    budget.release(1000)
    budget.reserve(1000)


def test_storing_costs_the_bytes_and_the_drivers_send_buffer() -> None:
    assert storing_cost(19 * 2**20) == 19 * 2**20 + 32 * 2**20
    assert storing_cost(16 * 2**20) == 32 * 2**20
    assert storing_cost(0) == 1


@pytest.mark.asyncio
async def test_uploads_wait_for_room_to_be_stored() -> None:
    budget = UploadBudget(
        limit=100 * SPILL_BYTES, memory_limit=2 * 3 * SPILL_BYTES, storing_wait=30
    )
    first, second, in_memory = form_of(budget, 1), form_of(budget, 1), form_of(budget, 1)
    for form in (first, second):
        form.files[0].write(b"y" * (SPILL_BYTES + 1))  # past the spill size: on disk
    in_memory.files[0].write(b"z" * 1000)
    order: list[str] = []

    async def store_second() -> None:
        await second.take_storing_room()
        with second.files[0].contents():
            order.append("second stored")

    await first.take_storing_room()
    with first.files[0].contents():
        order.append("first stored")
    waiting = asyncio.create_task(store_second())
    await asyncio.sleep(0.2)
    assert not waiting.done()  # the first upload holds the room until it is done
    await asyncio.wait_for(in_memory.take_storing_room(), 5)  # a file in memory needs none
    order.append("first done")
    first.close()
    await asyncio.wait_for(waiting, 5)
    assert order == ["first stored", "first done", "second stored"]
    second.close()
    assert budget.storing == 0


@pytest.mark.asyncio
async def test_an_upload_waiting_too_long_for_storing_room_is_busy() -> None:
    budget = UploadBudget(limit=100 * SPILL_BYTES, memory_limit=2 * SPILL_BYTES, storing_wait=0.2)
    first, second = form_of(budget, 1), form_of(budget, 1)
    for form in (first, second):
        form.files[0].write(b"y" * (SPILL_BYTES + 1))
    await first.take_storing_room()
    with pytest.raises(Busy) as refused:
        await second.take_storing_room()
    assert refused.value.retry_after >= 1
    first.close()
    await second.take_storing_room()  # the room is back
    second.close()
    assert budget.storing == 0


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
