"""Upload and token rate limits, atomic in Redis (the `limits` library's moving window)."""

from __future__ import annotations

import ipaddress
import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError
from starlette.requests import Request

from imgconv_core.errors import RateLimited
from imgconv_core.settings import Settings

log = logging.getLogger(__name__)


class RateLimits:
    """Checks named limits; fails open (logs) when Redis is unreachable."""

    def __init__(self, settings: Settings) -> None:
        url = settings.redis_url.replace("redis://", "async+redis://", 1).replace(
            "rediss://", "async+rediss://", 1
        )
        self._storage = RedisStorage(url, implementation="redispy", key_prefix="imgconv:rl")
        self._limiter = MovingWindowRateLimiter(self._storage)
        self.upload_per_token: RateLimitItem = parse(settings.upload_rate_per_token)
        self.upload_per_ip: RateLimitItem = parse(settings.upload_rate_per_ip)
        self.token_per_ip: RateLimitItem = parse(settings.token_rate_per_ip)
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]

    async def hit(self, item: RateLimitItem, scope: str, identity: str) -> None:
        """Count one request; raise RateLimited (429 + Retry-After) when over the limit."""
        try:
            if await self._limiter.hit(item, scope, identity):
                return
            stats = await self._limiter.get_window_stats(item, scope, identity)
        except (RedisError, OSError) as exc:
            log.warning("rate limiting unavailable, allowing the request: %s", exc)
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"too many requests ({item}); try again in {retry_after} s",
            retry_after=retry_after,
            details={"limit": str(item), "scope": scope},
        )

    def client_ip(self, request: Request) -> str:
        """The client address; X-Forwarded-For is believed only when sent by a trusted proxy."""
        peer = request.client.host if request.client else "unknown"
        if not self._proxies or not self._trusted(peer):
            return peer
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        # Walk from the nearest hop back; the first untrusted address is the client.
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._proxies)
