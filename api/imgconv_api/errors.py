"""The one place where errors become HTTP responses: `{"error": {"code", "message", "details"}}`.

Domain errors (core) carry a code and a message; their HTTP status and headers are chosen here,
for FastAPI's handlers and for the poll fast path alike. A few errors of the libraries under us
stand for one of them (`as_domain_error`): a client gone mid-body, PostgreSQL unreachable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from imgconv_api import metrics
from imgconv_core.errors import (
    Busy,
    ClientDisconnected,
    DatabaseUnavailable,
    EmptyFile,
    FileTooLarge,
    IdempotencyConflict,
    ImageDecodeError,
    ImageGone,
    ImageTooLarge,
    ImgconvError,
    InvalidFiles,
    InvalidRequest,
    JobNotCompleted,
    JobNotFound,
    NotAnImage,
    RateLimited,
    RequestTimeout,
    StorageUnavailable,
    TooManyFiles,
    TooManyFrames,
    Unauthorized,
    UnsupportedFormat,
    UnsupportedSourceFormat,
    UploadGone,
)
from imgconv_core.outages import DATABASE_ERRORS, database_unreachable

log = logging.getLogger(__name__)

# The poll route's operation id (routes/jobs.py): the errors of polls count as poll outcomes.
POLL_OPERATION = "getJob"

# Every domain error's status (a unit test checks that none is missing).
STATUSES: Mapping[type[ImgconvError], int] = {
    InvalidRequest: 422,
    UnsupportedFormat: 422,
    EmptyFile: 422,
    InvalidFiles: 422,  # unless every bad file has the same status: see `status_of`
    ImageDecodeError: 422,
    NotAnImage: 415,
    UnsupportedSourceFormat: 415,
    ImageTooLarge: 413,
    TooManyFrames: 413,
    FileTooLarge: 413,
    TooManyFiles: 413,
    RequestTimeout: 408,
    Unauthorized: 401,
    JobNotFound: 404,
    JobNotCompleted: 409,
    IdempotencyConflict: 409,
    ImageGone: 410,
    UploadGone: 410,
    RateLimited: 429,
    Busy: 503,
    StorageUnavailable: 503,
    DatabaseUnavailable: 503,
    ClientDisconnected: 499,  # nginx's "client closed request": for the logs, nobody reads it
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "service_unavailable",
}


def status_of(exc: ImgconvError) -> int:
    """The HTTP status of a domain error."""
    if isinstance(exc, InvalidFiles):
        # One kind of problem keeps its own status (415 not an image, 413 too large...).
        statuses = {status_of(cause) for cause in exc.causes}
        return statuses.pop() if len(statuses) == 1 else STATUSES[InvalidFiles]
    for cls in type(exc).__mro__:
        status = STATUSES.get(cls)
        if status is not None:
            return status
    return 500


def headers_of(exc: ImgconvError) -> dict[str, str]:
    """The HTTP headers a domain error's answer carries."""
    if isinstance(exc, RateLimited | Busy | StorageUnavailable | DatabaseUnavailable):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RequestTimeout):
        # The rest of a slow body is not read: the connection cannot carry another request.
        return {"Connection": "close"}
    return {}


def as_domain_error(exc: BaseException) -> ImgconvError | None:
    """The domain error a library's exception stands for, if any."""
    if isinstance(exc, ImgconvError):
        return exc
    if isinstance(exc, ClientDisconnect):
        return ClientDisconnected("the client closed the connection before its request was read")
    if database_unreachable(exc):
        return DatabaseUnavailable("the database is unavailable; try again shortly")
    return None


def error_body(code: str, message: str, details: Any = None) -> bytes:
    """The JSON error body, serialized (for raw ASGI responses)."""
    return json.dumps(
        {"error": {"code": code, "message": message, "details": details}}, separators=(",", ":")
    ).encode()


def domain_error_body(exc: ImgconvError) -> bytes:
    """The JSON body of a domain error's answer."""
    return error_body(exc.code, exc.message, exc.details)


def count_error(request: Request, code: str) -> None:
    """Count an error answer: an upload's as a rejection, a poll's (one the fast path left to
    FastAPI, such as a malformed id or `wait`) as a poll outcome."""
    metrics.count_error(request, code)
    route = request.scope.get("route")
    if request.method == "GET" and getattr(route, "operation_id", None) == POLL_OPERATION:
        state = getattr(request.app.state, "imgconv", None)
        if state is not None:
            state.poll_metrics.answered(metrics.poll_error_outcome(code))


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON error in the API's format."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    error = as_domain_error(exc)
    if error is None:  # a database error that is not an outage
        return await _unexpected_error(request, exc)
    if isinstance(error, DatabaseUnavailable):  # no traceback: an outage, not a bug
        log.warning("%s %s: %s (%s)", request.method, request.url.path, error.code, exc)
    count_error(request, error.code)
    return error_response(
        status_of(error), error.code, error.message, error.details, headers_of(error)
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in err["loc"][1:]) or None, "message": err["msg"]}
        for err in exc.errors()
    ]
    count_error(request, "invalid_request")
    return error_response(422, "invalid_request", "The request is not valid.", details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    count_error(request, code)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route on the path; RFC 9110 wants them all.
        headers["Allow"] = ", ".join(allowed_methods(request))
    return error_response(exc.status_code, code, str(exc.detail), None, headers)


def allowed_methods(request: Request) -> list[str]:
    """The methods of every route on the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    count_error(request, "internal_error")
    return error_response(500, "internal_error", "Something went wrong on our side.")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the same JSON shape."""
    for cls in (ImgconvError, ClientDisconnect, *DATABASE_ERRORS):
        app.add_exception_handler(cls, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
