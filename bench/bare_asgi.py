"""The reference for poll speed: a bare ASGI app that answers every request with one Redis GET.

Run: `python -m bench.bare_asgi PORT [WORKERS]` with BENCH_REDIS_URL and BENCH_KEY set. It is
served with the very uvicorn settings `imgconv api` uses (`imgconv_cli.commands.api`).
"""

from __future__ import annotations

import os
import sys

import redis.asyncio as aioredis
from starlette.types import Receive, Scope, Send

# The same client settings as the API's (timeouts make a hung Redis fail fast; they cost a
# little per call), so the comparison measures the framework, not the client configuration.
_client = aioredis.Redis.from_url(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    max_connections=200,
    socket_timeout=1.0,
    socket_connect_timeout=1.0,
)
_key = os.environ.get("BENCH_KEY", "bench")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """GET one key from Redis and return its value."""
    if scope["type"] != "http":
        return
    value = await _client.get(_key) or b""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": value})


if __name__ == "__main__":
    import uvicorn

    from imgconv_cli.commands.api import uvicorn_config

    port, workers = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1
    uvicorn.run(
        "bench.bare_asgi:app",
        **uvicorn_config("127.0.0.1", port, workers=workers, log_level="warning", access_log=False),
    )
