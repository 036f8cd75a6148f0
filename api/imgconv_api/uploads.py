"""Streaming multipart parsing of uploads, within bounds while the body arrives:

- a too-large file or request is answered 413 before the rest of it is read;
- a file stays in memory while small and while this process's uploads hold little memory,
  and goes to a temporary file otherwise, so memory does not grow with what clients send;
- the upload bytes this process holds (memory and temporary files) stay within a budget, taken
  as the bytes arrive: past it, an upload is answered 503 `busy` with Retry-After;
- an upload waits for room to be stored in the event loop, not in a pool thread, and at most
  `IMGCONV_UPLOAD_STORING_WAIT_SECONDS`;
- a body that arrives too slowly (a pause, or a trickle) is answered 408.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from imgconv_api import metrics
from imgconv_core.errors import Busy, FileTooLarge, InvalidRequest, RequestTimeout, TooManyFiles
from imgconv_core.settings import Settings

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 4096
MAX_FIELDS = 32
# A file up to this size may stay in memory; past it, it goes to a temporary file.
SPILL_BYTES = 1024 * 1024
BUSY_RETRY_AFTER_SECONDS = 2


def storing_cost(size: int) -> int:
    """The memory storing a file of `size` bytes read back from disk takes: the bytes, and the
    database driver's send buffer, which grows to the next power of two of its largest message
    and stays so until the connection is closed (imgconv_core.db.session)."""
    return size + (1 << max(size - 1, 0).bit_length())


class UploadBudget:
    """The upload bytes this process holds.

    - All of them (memory and temporary files) within `limit`, taken as they arrive (an
      announced Content-Length takes nothing: a client trickling a large body must not hold
      what it has not sent): past it, `reserve` raises Busy.
    - Half of `memory_limit` for files that stay in memory as they arrive (small ones, while
      there is room; the others go to temporary files).
    - The other half for uploads being inspected and stored: each holds `storing_cost` of its
      largest file from a temporary file, until it is done; others wait for room, in the event
      loop (a thread waiting would hold one of the few that downloads and deletes need too).

    Used from the event loop only; the threads that accept uploads read the form's files.
    """

    def __init__(self, limit: int, memory_limit: int, storing_wait: float) -> None:
        self.limit = limit
        self.in_memory_limit = memory_limit // 2
        self.storing_limit = memory_limit - self.in_memory_limit
        self.storing_wait = storing_wait
        self.held = 0
        self.in_memory = 0
        self.storing = 0
        self._storing_waiters: list[asyncio.Future[None]] = []

    def _busy(self) -> Busy:
        return Busy(
            "the server holds as many uploads as it can right now; try again shortly",
            retry_after=BUSY_RETRY_AFTER_SECONDS,
        )

    def check_room(self, size: int) -> None:
        """Raise Busy if `size` more bytes do not fit now (takes nothing)."""
        if self.held + size > self.limit:
            raise self._busy()

    def reserve(self, size: int) -> None:
        """Take `size` more bytes of the budget, or raise Busy."""
        self.check_room(size)
        self.held += size
        metrics.UPLOAD_BYTES_HELD.set(self.held)

    def release(self, size: int) -> None:
        """Give back bytes taken with `reserve`."""
        self.held -= size
        metrics.UPLOAD_BYTES_HELD.set(self.held)

    def count_in_memory(self, change: int) -> None:
        """Count bytes that files keep in memory (negative: freed or moved to disk)."""
        self.in_memory += change
        metrics.UPLOAD_BYTES_IN_MEMORY.set(self.in_memory)

    def keeps_in_memory(self, file_size: int, more: int) -> bool:
        """Whether a file of `file_size` bytes may stay in memory with `more` bytes added."""
        return file_size + more <= SPILL_BYTES and self.in_memory + more <= self.in_memory_limit

    async def take_storing_room(self, size: int) -> int:
        """Wait until `size` bytes of storing room are free and take them (a need larger than
        the whole room takes all of it: such an upload is stored alone); returns what it took.
        Raises Busy after `storing_wait` seconds."""
        size = min(size, self.storing_limit)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.storing_wait
        while self.storing + size > self.storing_limit:
            waiter = loop.create_future()
            self._storing_waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise self._busy() from None
            finally:
                if waiter in self._storing_waiters:
                    self._storing_waiters.remove(waiter)
        self.storing += size
        return size

    def give_storing_room(self, size: int) -> None:
        """Give back what `take_storing_room` took (every waiter checks again)."""
        self.storing -= size
        waiters, self._storing_waiters = self._storing_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class UploadedFile:
    """One file of an upload: in memory while the budget allows, else in a temporary file; its
    SHA-256 computed as it arrives when asked for."""

    def __init__(self, index: int, filename: str, form: UploadForm, *, hashed: bool) -> None:
        self.index = index
        self.filename = filename
        self.size = 0
        self._form = form
        self._budget = form.budget
        self._memory = bytearray()
        self._disk: BinaryIO | None = None
        self._sha256 = hashlib.sha256() if hashed else None

    @property
    def spilled(self) -> bool:
        """Whether the content is in a temporary file."""
        return self._disk is not None

    def write(self, data: bytes | memoryview) -> None:
        """Append a piece of the content."""
        if self._sha256 is not None:
            self._sha256.update(data)
        more = len(data)
        if self._disk is None and not self._budget.keeps_in_memory(self.size, more):
            self._spill()
        if self._disk is None:
            self._memory += data
            self._budget.count_in_memory(more)
        else:
            self._disk.write(data)
        self.size += more

    def _spill(self) -> None:
        self._disk = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._disk.write(self._memory)
        self._budget.count_in_memory(-len(self._memory))
        self._memory = bytearray()

    def digest(self) -> bytes:
        """SHA-256 of the content."""
        if self._sha256 is None:
            with self.contents() as data:
                self._sha256 = hashlib.sha256(data)
        return self._sha256.digest()

    @contextlib.contextmanager
    def contents(self) -> Iterator[bytes]:
        """The whole content while the block runs (from a temporary file, in the storing room
        its form took)."""
        if self._disk is None:
            yield bytes(self._memory)  # counted already, as held in memory
            return
        self._disk.seek(0)
        yield self._disk.read()

    @contextlib.contextmanager
    def stream(self) -> Iterator[BinaryIO]:
        """The content as a file object at its start, for stores that read files in pieces: the
        temporary file itself, so a spilled file is never in memory whole."""
        if self._disk is None:
            yield io.BytesIO(self._memory)  # small (kept in memory): a copy costs little
            return
        self._disk.seek(0)
        yield self._disk

    def close(self) -> None:
        """Free the memory or temporary file."""
        if self._memory:
            self._budget.count_in_memory(-len(self._memory))
        self._memory = bytearray()
        if self._disk is not None:
            self._disk.close()


@dataclass
class UploadForm:
    fields: dict[str, str]
    files: list[UploadedFile]
    budget: UploadBudget
    held: int = 0  # bytes of the budget this upload holds
    storing_room: int = 0  # bytes of the budget's storing room it holds
    closed: bool = field(default=False)

    async def take_storing_room(self) -> None:
        """Hold room to store the files from temporary files until the form is closed (waits
        for it, or raises Busy); nothing if every file is in memory."""
        if not self.storing_room and any(file.spilled for file in self.files):
            largest = max(file.size for file in self.files if file.spilled)
            self.storing_room = await self.budget.take_storing_room(storing_cost(largest))

    def close(self) -> None:
        """Free the files and give their bytes back to the budget."""
        if self.closed:
            return
        self.closed = True
        for file in self.files:
            file.close()
        self.budget.release(self.held)
        if self.storing_room:
            self.budget.give_storing_room(self.storing_room)


def safe_filename(raw: str, fallback: str) -> str:
    """A display name without path parts or control characters, at most 200 characters."""
    name = os.path.basename(raw.replace("\\", "/"))
    name = "".join(
        ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C"
    )
    name = re.sub(r"\s+", " ", name).strip().lstrip(".")
    return name[:200] or fallback


def body_deadline(settings: Settings, started: float, last_data: float, received: int) -> float:
    """When the wait for the next piece of a body ends: `body_timeout_seconds` after the last
    piece, and no later than the body's minimum rate allows (a trickle is cut off too)."""
    timeout = settings.body_timeout_seconds
    at_min_rate = started + timeout + received / settings.body_min_bytes_per_second
    return min(last_data + timeout, at_min_rate)


class _FormCollector:
    """python-multipart callbacks that build an UploadForm and enforce limits as data streams."""

    def __init__(self, settings: Settings, form: UploadForm, *, hashed: bool) -> None:
        self.settings = settings
        self.form = form
        self.hashed = hashed
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._file: UploadedFile | None = None
        self._field_name: str | None = None
        self._field_value = bytearray()

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._file = None
        self._field_name = None
        self._field_value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            if name != "file":
                raise InvalidRequest(f"unexpected file field {name!r}; send files as 'file'")
            index = len(self.form.files)
            if index >= self.settings.max_files:
                raise TooManyFiles(
                    f"at most {self.settings.max_files} files per request",
                    details={"max_files": self.settings.max_files},
                )
            filename = safe_filename(
                options[b"filename"].decode("utf-8", "replace"), f"file-{index + 1}"
            )
            self._file = UploadedFile(index, filename, self.form, hashed=self.hashed)
            self.form.files.append(self._file)
        else:
            if len(self.form.fields) >= MAX_FIELDS:
                raise InvalidRequest("too many form fields")
            self._field_name = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            if self._file.size + end - start > self.settings.max_file_bytes:
                raise FileTooLarge(
                    f"{self._file.filename!r} is larger than the limit of "
                    f"{self.settings.max_file_bytes} bytes",
                    details=[
                        {
                            "index": self._file.index,
                            "filename": self._file.filename,
                            "code": FileTooLarge.code,
                            "message": "file too large",
                        }
                    ],
                )
            self._file.write(memoryview(data)[start:end])
        else:
            self._field_value += data[start:end]
            if len(self._field_value) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"form field {self._field_name!r} is too long")

    def on_part_end(self) -> None:
        if self._file is None and self._field_name is not None:
            self.form.fields[self._field_name] = self._field_value.decode("utf-8", "replace")


async def parse_upload(
    request: Request, settings: Settings, budget: UploadBudget, *, hashed: bool
) -> UploadForm:
    """Read a multipart/form-data upload within the limits above; the caller closes the form.
    `hashed`: compute each file's SHA-256 as it arrives."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("send the files as multipart/form-data with one 'file' part each")
    header = request.headers.get("content-length")
    length = int(header) if header is not None and header.isdigit() else None
    if length is not None and length > settings.max_request_bytes:
        raise FileTooLarge(
            f"the request is larger than {settings.max_request_bytes} bytes "
            f"({settings.max_files} files of at most {settings.max_file_bytes} bytes)"
        )
    if length is not None:
        # Refused at once if it cannot fit now, but nothing is taken before the bytes arrive.
        budget.check_room(length)
    form = UploadForm(fields={}, files=[], budget=budget)
    try:
        await _read_form(
            request,
            settings,
            form,
            MultipartParser(boundary, _callbacks(_FormCollector(settings, form, hashed=hashed))),
        )
        if not form.files:
            raise InvalidRequest("no files: add one or more 'file' parts")
        # Before the upload enters a pool thread, which must not wait.
        await form.take_storing_room()
    except BaseException:
        form.close()
        raise
    return form


def _callbacks(collector: _FormCollector) -> MultipartCallbacks:
    return {
        "on_part_begin": collector.on_part_begin,
        "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished,
    }


async def _read_form(
    request: Request, settings: Settings, form: UploadForm, parser: MultipartParser
) -> None:
    loop = asyncio.get_running_loop()
    started = last_data = loop.time()
    received = 0
    more = True
    try:
        while more:
            try:
                async with asyncio.timeout_at(
                    body_deadline(settings, started, last_data, received)
                ):
                    message = await request.receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body arrived too slowly (received {received} bytes)",
                    details={"received_bytes": received},
                ) from None
            if message["type"] == "http.disconnect":
                raise ClientDisconnect
            chunk: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if chunk:
                last_data = loop.time()
                received += len(chunk)
                if received > settings.max_request_bytes:
                    raise FileTooLarge(
                        f"the request is larger than {settings.max_request_bytes} bytes"
                    )
                form.budget.reserve(len(chunk))  # as it comes
                form.held = received
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidRequest("the multipart body is malformed") from exc
