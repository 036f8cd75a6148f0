"""Domain errors; the API turns them into HTTP responses in one place (imgconv_api.errors)."""

from __future__ import annotations

from typing import Any


class ImgconvError(Exception):
    """Base class: every domain error has a stable snake_case code and a human message."""

    code: str = "error"
    status_hint: int = 400  # the HTTP status the API uses; kept here so the mapping has one source

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


# --- input validation (4xx) -------------------------------------------------------------------


class InvalidRequest(ImgconvError):
    code = "invalid_request"
    status_hint = 422


class UnsupportedFormat(ImgconvError):
    """The requested target format is not one we write."""

    code = "unsupported_format"
    status_hint = 422


class NotAnImage(ImgconvError):
    """The bytes are not an image in any format we read (sniffed from content, never the name)."""

    code = "not_an_image"
    status_hint = 415


class UnsupportedSourceFormat(ImgconvError):
    """An image, but in a format we do not read."""

    code = "unsupported_source_format"
    status_hint = 415


class ImageTooLarge(ImgconvError):
    """Too many pixels (frames x width x height) for the configured limit."""

    code = "image_too_large"
    status_hint = 413


class TooManyFrames(ImgconvError):
    code = "too_many_frames"
    status_hint = 413


class FileTooLarge(ImgconvError):
    code = "file_too_large"
    status_hint = 413


class TooManyFiles(ImgconvError):
    code = "too_many_files"
    status_hint = 413


class EmptyFile(ImgconvError):
    code = "empty_file"
    status_hint = 422


class InvalidFiles(ImgconvError):
    """Some files of a multi-file upload were rejected; details lists each with its reason."""

    code = "invalid_files"
    status_hint = 422


# --- conversion (the job ends failed with this code) -------------------------------------------


class ImageDecodeError(ImgconvError):
    """The file passed the header checks but could not be decoded; message is path-free."""

    code = "decode_failed"
    status_hint = 422


class ConversionFailed(ImgconvError):
    code = "conversion_failed"
    status_hint = 500


# --- jobs / auth --------------------------------------------------------------------------------


class Unauthorized(ImgconvError):
    code = "unauthorized"
    status_hint = 401


class JobNotFound(ImgconvError):
    code = "job_not_found"
    status_hint = 404


class JobNotCompleted(ImgconvError):
    code = "job_not_completed"
    status_hint = 409


class ImageGone(ImgconvError):
    """The job exists but its stored image was deleted (canceled or expired)."""

    code = "image_gone"
    status_hint = 410


class RateLimited(ImgconvError):
    code = "rate_limited"
    status_hint = 429

    def __init__(self, message: str, *, retry_after: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class IdempotencyConflict(ImgconvError):
    code = "idempotency_conflict"
    status_hint = 409


class ServiceUnavailable(ImgconvError):
    code = "service_unavailable"
    status_hint = 503


class StorageUnavailable(ImgconvError):
    """The image store (S3) did not answer or refused us; nothing was stored, try again."""

    code = "storage_unavailable"
    status_hint = 503

    def __init__(self, message: str, *, retry_after: int = 5, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after
