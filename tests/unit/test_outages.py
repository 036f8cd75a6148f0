"""Which exceptions count as a service outage (one log line) rather than a bug (a traceback):
raised for real by the libraries, against ports where nothing listens."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from imgconv_core.errors import StorageUnavailable
from imgconv_core.outages import database_unreachable, log_failure, outage
from tests.support.services import free_port


def raised_by(kind: type[BaseException], action: Callable[[], object]) -> BaseException:
    with pytest.raises(kind) as caught:
        action()
    return caught.value


def test_postgres_refusing_connections_is_a_database_outage_in_one_line() -> None:
    engine = create_engine(f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/db")

    def query() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    exc = raised_by(OperationalError, query)
    assert database_unreachable(exc)
    line = outage(exc)
    assert line is not None
    assert line.startswith("database unavailable: ")
    assert "\n" not in line
    assert "SELECT" not in line
    assert "sqlalche.me" not in line
    engine.dispose()


def test_redis_refusing_connections_is_a_redis_outage() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=1)
    line = outage(raised_by(redis.ConnectionError, client.ping))
    assert line is not None
    assert line.startswith("redis unavailable: ")


def test_the_image_store_down_is_an_outage() -> None:
    assert outage(StorageUnavailable("S3 did not answer")) == (
        "image store unavailable: S3 did not answer"
    )


@pytest.mark.parametrize(
    "exc", [ValueError("bad"), KeyError("job"), redis.ResponseError("WRONGTYPE"), RuntimeError()]
)
def test_anything_else_is_not_an_outage(exc: BaseException) -> None:
    assert outage(exc) is None
    assert not database_unreachable(exc)


def test_an_outage_is_logged_in_one_line_and_a_bug_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("imgconv_test.outages")
    with caplog.at_level(logging.WARNING, logger=log.name):
        log_failure(log, "the pass failed", StorageUnavailable("S3 did not answer"))
        log_failure(log, "the pass failed", ValueError("a bug"))
    down, bug = caplog.records
    assert (down.levelno, down.getMessage(), down.exc_info) == (
        logging.WARNING,
        "the pass failed (image store unavailable: S3 did not answer)",
        None,
    )
    assert (bug.levelno, bug.getMessage()) == (logging.ERROR, "the pass failed (unexpected error)")
    assert bug.exc_info is not None
    assert isinstance(bug.exc_info[1], ValueError)
