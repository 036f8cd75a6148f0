"""Turning an upload (form fields + files) into validated jobs, all or nothing."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imgconv_core.db.job_store import NewJob
from imgconv_core.errors import EmptyFile, ImgconvError, InvalidFiles, InvalidRequest
from imgconv_core.images.formats import ImageFormat, parse_target_format
from imgconv_core.images.inspect import ImageInfo, ImageLimits, inspect_image

MAX_DIMENSION = 65_535


class ConversionRequest(BaseModel):
    """The form fields of an upload besides the files."""

    model_config = ConfigDict(extra="forbid")

    format: ImageFormat
    quality: int | None = Field(default=None, ge=1, le=100)
    max_width: int | None = Field(default=None, ge=1, le=MAX_DIMENSION)
    max_height: int | None = Field(default=None, ge=1, le=MAX_DIMENSION)
    strip_metadata: bool = True

    @field_validator("format", mode="before")
    @classmethod
    def _alias(cls, value: object) -> object:
        return parse_target_format(value) if isinstance(value, str) else value

    @field_validator("strip_metadata", mode="before")
    @classmethod
    def _true_or_false(cls, value: object) -> object:
        # A form field is text: only what a JSON boolean spells (not "1", "yes", "on"...).
        if isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise ValueError("must be true or false")
            return value.lower() == "true"
        return value

    def job_options(self) -> dict[str, Any]:
        """What is stored with each job and shown as `options`."""
        return {
            "quality": self.quality,
            "max_width": self.max_width,
            "max_height": self.max_height,
            "strip_metadata": self.strip_metadata,
        }


def parse_conversion_request(fields: Mapping[str, str]) -> ConversionRequest:
    """Validate the upload's fields; empty values count as absent."""
    data = {key: value for key, value in fields.items() if value.strip() != ""}
    if "format" not in data:
        raise InvalidRequest(
            "the 'format' field is required",
            details=[{"field": "format", "message": "required"}],
        )
    try:
        return ConversionRequest.model_validate(data)
    except ImgconvError:
        raise
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        raise InvalidRequest("some upload options are not valid", details=details) from exc


class UploadFile(Protocol):
    """One received file: its bytes may be in memory or in a temporary file."""

    @property
    def index(self) -> int: ...

    @property
    def filename(self) -> str: ...

    @property
    def size(self) -> int: ...

    def digest(self) -> bytes:
        """SHA-256 of the content."""

    def contents(self) -> AbstractContextManager[bytes]:
        """The whole content, for the duration of the `with` block (may wait: the process
        bounds how many bytes are read out at once)."""


class Upload(Protocol):
    """A received upload: its form fields and files."""

    @property
    def fields(self) -> Mapping[str, str]: ...

    @property
    def files(self) -> Sequence[UploadFile]: ...


def prepare_jobs(
    request: ConversionRequest,
    files: Sequence[UploadFile],
    limits: ImageLimits,
    new_id: Callable[[], uuid.UUID],
) -> list[NewJob]:
    """Inspect every file (sniffed content, header-only limits); InvalidFiles lists bad ones.

    One file's bytes are in memory at a time; the jobs keep a handle on the file, not its bytes.
    """
    jobs: list[NewJob] = []
    problems: list[dict[str, Any]] = []
    causes: list[ImgconvError] = []
    for upload in files:
        try:
            info = _inspect(upload, limits)
        except ImgconvError as exc:
            causes.append(exc)
            problems.append(
                {
                    "index": upload.index,
                    "filename": upload.filename,
                    "code": exc.code,
                    "message": exc.message,
                }
            )
            continue
        jobs.append(
            NewJob(
                id=new_id(),
                filename=upload.filename,
                source=upload,
                source_format=info.format,
                source_mime=info.mime_type,
                width=info.width,
                height=info.height,
                target_format=request.format.value,
                options=request.job_options(),
            )
        )
    if problems:
        raise InvalidFiles(
            f"{len(problems)} of {len(files)} file(s) cannot be converted; nothing was accepted",
            causes=causes,
            details=problems,
        )
    return jobs


def _inspect(upload: UploadFile, limits: ImageLimits) -> ImageInfo:
    if not upload.size:
        raise EmptyFile("the file is empty")
    # The bytes go with this frame.
    with upload.contents() as data:
        return inspect_image(data, limits)


def upload_fingerprint(request: ConversionRequest, files: Sequence[UploadFile]) -> str:
    """What an Idempotency-Key is bound to: the options and every file's name and content."""
    digest = hashlib.sha256(request.model_dump_json().encode())
    for upload in files:
        digest.update(upload.filename.encode() + b"\0")
        digest.update(upload.digest())
    return digest.hexdigest()
