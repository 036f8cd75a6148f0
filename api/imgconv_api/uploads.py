"""Streaming multipart parsing of uploads, enforcing the size and count limits while the body
arrives (a too-large file is answered 413 before the rest of it is read)."""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from imgconv_core.errors import FileTooLarge, InvalidRequest, TooManyFiles
from imgconv_core.settings import Settings

MAX_FIELD_BYTES = 4096
MAX_FIELDS = 32


@dataclass
class UploadedFile:
    index: int
    filename: str
    data: bytearray = field(default_factory=bytearray)


@dataclass
class UploadForm:
    fields: dict[str, str]
    files: list[UploadedFile]


def safe_filename(raw: str, fallback: str) -> str:
    """A display name without path parts or control characters, at most 200 characters."""
    name = os.path.basename(raw.replace("\\", "/"))
    name = "".join(
        ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C"
    )
    name = re.sub(r"\s+", " ", name).strip().lstrip(".")
    return name[:200] or fallback


class _FormCollector:
    """python-multipart callbacks that build an UploadForm and enforce limits as data streams."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.form = UploadForm(fields={}, files=[])
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
            self._file = UploadedFile(index=index, filename=filename)
            self.form.files.append(self._file)
        else:
            if len(self.form.fields) >= MAX_FIELDS:
                raise InvalidRequest("too many form fields")
            self._field_name = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.data += data[start:end]
            if len(self._file.data) > self.settings.max_file_bytes:
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
        else:
            self._field_value += data[start:end]
            if len(self._field_value) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"form field {self._field_name!r} is too long")

    def on_part_end(self) -> None:
        if self._file is None and self._field_name is not None:
            self.form.fields[self._field_name] = self._field_value.decode("utf-8", "replace")


async def parse_upload(request: Request, settings: Settings) -> UploadForm:
    """Read a multipart/form-data upload, failing fast on the configured limits."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("send the files as multipart/form-data with one 'file' part each")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > settings.max_request_bytes:
        raise FileTooLarge(
            f"the request is larger than {settings.max_request_bytes} bytes "
            f"({settings.max_files} files of at most {settings.max_file_bytes} bytes)"
        )
    collector = _FormCollector(settings)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidRequest("the multipart body is malformed") from exc
    if not collector.form.files:
        raise InvalidRequest("no files: add one or more 'file' parts")
    return collector.form
