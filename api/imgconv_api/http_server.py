"""uvicorn's HTTP protocol with the deadlines it lacks, so a slow client cannot hold a connection:

- a request's headers must arrive within `IMGCONV_HEADER_TIMEOUT_SECONDS` of its first byte
  (or of the connection, for the first request), else 408 and the connection is closed
  (uvicorn waits for ever: its keep-alive timer only runs between requests);
- a connection whose request body was not read to its end when the answer went out (a 413, a
  408 or a 503 sent early) is closed, instead of reading whatever the client keeps sending.

The body's own deadline is the app's (`imgconv_api.uploads`). Run uvicorn with
`--http imgconv_api.http_server:DeadlineHttpProtocol` (`HTTP_PROTOCOL`).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from imgconv_api.errors import domain_error_body, headers_of, status_of
from imgconv_core.errors import RequestTimeout
from imgconv_core.settings import get_settings

HTTP_PROTOCOL = "imgconv_api.http_server:DeadlineHttpProtocol"


def timeout_response(seconds: float) -> bytes:
    """The raw answer (408) to headers that arrive too slowly; status, code and headers are
    the RequestTimeout domain error's, from the one error table."""
    exc = RequestTimeout(f"the request headers did not arrive within {seconds:g} seconds")
    status = HTTPStatus(status_of(exc))
    body = domain_error_body(exc)
    # The connection closes whatever the table says: the rest of the request is never read.
    headers = {name.lower(): value for name, value in headers_of(exc).items()}
    headers |= {"content-type": "application/json", "content-length": str(len(body))}
    headers["connection"] = "close"
    head = f"HTTP/1.1 {status.value} {status.phrase}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return (head + "\r\n").encode() + body


class DeadlineHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a header deadline and no reading past an early answer."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout = get_settings().header_timeout_seconds
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # the next request on a kept-alive connection
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not self.transport.is_closing():
            # The body was not read to its end: what follows on this connection is unknown.
            self.transport.close()
        super().on_response_complete()

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(timeout_response(self.header_timeout))
            self.transport.close()
