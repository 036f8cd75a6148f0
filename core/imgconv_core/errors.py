"""Domain errors, each with a stable snake_case code; the API gives them HTTP statuses in one
place (imgconv_api.errors), so nothing here knows about HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ImgconvError(Exception):
    """Base class: every domain error has a stable snake_case code and a human message."""

    code: str = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


# --- input validation --------------------------------------------------------------------------


class InvalidRequest(ImgconvError):
    code = "invalid_request"


class UnsupportedFormat(ImgconvError):
    """The requested target format is not one we write."""

    code = "unsupported_format"


class NotAnImage(ImgconvError):
    """The bytes are not an image in any format we read (sniffed from content, never the name)."""

    code = "not_an_image"


class UnsupportedSourceFormat(ImgconvError):
    """An image, but in a format we do not read."""

    code = "unsupported_source_format"


class ImageTooLarge(ImgconvError):
    """Too many pixels (frames x width x height) for the configured limit."""

    code = "image_too_large"


class TooManyFrames(ImgconvError):
    code = "too_many_frames"


class FileTooLarge(ImgconvError):
    code = "file_too_large"


class TooManyFiles(ImgconvError):
    code = "too_many_files"


class EmptyFile(ImgconvError):
    code = "empty_file"


class InvalidFiles(ImgconvError):
    """Some files of a multi-file upload were rejected; details lists each with its reason,
    `causes` holds each file's own error."""

    code = "invalid_files"

    def __init__(
        self, message: str, *, causes: Sequence[ImgconvError], details: Any = None
    ) -> None:
        super().__init__(message, details=details)
        self.causes = list(causes)


class RequestTimeout(ImgconvError):
    """The client sent its request too slowly (see `IMGCONV_BODY_TIMEOUT_SECONDS`)."""

    code = "request_timeout"


class ClientDisconnected(ImgconvError):
    """The client closed the connection before its request was read (nobody gets the answer)."""

    code = "client_disconnected"


# --- conversion (the job ends failed with this code) -------------------------------------------


class ImageDecodeError(ImgconvError):
    """The file passed the header checks but could not be decoded; message is path-free."""

    code = "decode_failed"


# --- jobs / auth --------------------------------------------------------------------------------


class Unauthorized(ImgconvError):
    code = "unauthorized"


class JobNotFound(ImgconvError):
    code = "job_not_found"


class JobNotCompleted(ImgconvError):
    code = "job_not_completed"


class ImageGone(ImgconvError):
    """The job exists but its stored image was deleted (canceled or expired)."""

    code = "image_gone"


class IdempotencyConflict(ImgconvError):
    """The Idempotency-Key was used before for a different upload."""

    code = "idempotency_conflict"


class UploadGone(ImgconvError):
    """A replay of an upload (same Idempotency-Key) whose jobs were deleted since."""

    code = "upload_gone"


# --- load ---------------------------------------------------------------------------------------


class RateLimited(ImgconvError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class Busy(ImgconvError):
    """This process holds as many upload bytes as its budget allows; try again shortly."""

    code = "busy"

    def __init__(self, message: str, *, retry_after: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class StorageUnavailable(ImgconvError):
    """The image store (S3) did not answer or refused us; nothing was stored, try again."""

    code = "storage_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class DatabaseUnavailable(ImgconvError):
    """PostgreSQL did not answer (unreachable, connection lost, pool exhausted); try again."""

    code = "database_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after
