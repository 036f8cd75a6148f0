"""The one place where errors become HTTP responses: `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgconv_api import metrics
from imgconv_core.errors import ImgconvError, RateLimited, StorageUnavailable

log = logging.getLogger(__name__)

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


def error_body(code: str, message: str, details: Any = None) -> bytes:
    """The JSON error body, serialized (for raw ASGI responses)."""
    return json.dumps(
        {"error": {"code": code, "message": message, "details": details}}, separators=(",", ":")
    ).encode()


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
    assert isinstance(exc, ImgconvError)
    headers = None
    if isinstance(exc, RateLimited | StorageUnavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    if exc.status_hint == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    metrics.count_error(request, exc.code)
    return error_response(exc.status_hint, exc.code, exc.message, exc.details, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in err["loc"][1:]) or None, "message": err["msg"]}
        for err in exc.errors()
    ]
    metrics.count_error(request, "invalid_request")
    return error_response(422, "invalid_request", "The request is not valid.", details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    metrics.count_error(request, code)
    return error_response(exc.status_code, code, str(exc.detail), None, exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    metrics.count_error(request, "internal_error")
    return error_response(500, "internal_error", "Something went wrong on our side.")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the same JSON shape."""
    app.add_exception_handler(ImgconvError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
