"""Domain errors get their HTTP status and headers in one table (imgconv_api.errors)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import ClientDisconnect

from imgconv_api.errors import STATUSES, as_domain_error, headers_of, status_of
from imgconv_core import errors
from imgconv_core.errors import (
    Busy,
    DatabaseUnavailable,
    ImageTooLarge,
    ImgconvError,
    InvalidFiles,
    NotAnImage,
    RateLimited,
    RequestTimeout,
    Unauthorized,
)


def all_errors(cls: type[ImgconvError] = ImgconvError) -> list[type[ImgconvError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *all_errors(sub)]
    return found


def test_every_domain_error_has_a_status() -> None:
    declared = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, ImgconvError) and value is not ImgconvError
    ]
    assert set(declared) <= set(all_errors())
    missing = [cls.__name__ for cls in declared if cls not in STATUSES]
    assert missing == []
    assert len({cls.code for cls in declared}) == len(declared)  # codes are unique


def invalid_files(*causes: ImgconvError) -> InvalidFiles:
    return InvalidFiles("bad files", causes=causes)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (invalid_files(NotAnImage("x"), NotAnImage("y")), 415),
        (invalid_files(ImageTooLarge("x")), 413),
        (invalid_files(NotAnImage("x"), ImageTooLarge("y")), 422),
        (Unauthorized("x"), 401),
        (Busy("x", retry_after=2), 503),
    ],
)
def test_statuses(error: ImgconvError, status: int) -> None:
    assert status_of(error) == status


def test_headers() -> None:
    assert headers_of(RateLimited("x", retry_after=7)) == {"Retry-After": "7"}
    assert headers_of(Busy("x", retry_after=2)) == {"Retry-After": "2"}
    assert headers_of(Unauthorized("x")) == {"WWW-Authenticate": "Bearer"}
    assert headers_of(RequestTimeout("x")) == {"Connection": "close"}
    assert headers_of(NotAnImage("x")) == {}


def test_library_errors_that_stand_for_domain_errors() -> None:
    refused = psycopg.OperationalError("connection refused")
    outage = OperationalError("SELECT 1", {}, refused)
    gone = as_domain_error(outage)
    assert isinstance(gone, DatabaseUnavailable)
    assert (status_of(gone), headers_of(gone)["Retry-After"]) == (503, "5")
    assert isinstance(as_domain_error(PoolTimeout("QueuePool limit")), DatabaseUnavailable)
    assert status_of(as_domain_error(ClientDisconnect()) or Busy("x", retry_after=1)) == 499
    # A constraint violation is a bug of ours, not an outage.
    assert as_domain_error(IntegrityError("INSERT", {}, psycopg.IntegrityError("dup"))) is None
    assert as_domain_error(ValueError("x")) is None
