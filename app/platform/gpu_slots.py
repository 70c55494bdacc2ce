"""The ComfyUI pool's slots counted in Redis, so that however many worker processes run on
however many machines, a server is given no more jobs at once than it has slots. Each claim is a
member of the server's sorted set, scored by when it expires (Redis's own clock, so machines
whose clocks disagree still agree); a crashed worker's claim lapses by itself."""

from __future__ import annotations

import math
from typing import Any

from redis.asyncio import Redis

from app.platform.redis_keys import gpu_slots_key

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""
ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
return 0
"""
)
RENEW = (
    _NOW
    + """
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0
"""
)


class RedisSlots:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._ns = namespace
        self._acquire: Any = redis.register_script(ACQUIRE)
        self._renew: Any = redis.register_script(RENEW)

    async def acquire(self, server: str, capacity: int, holder: str, ttl: float) -> bool:
        keep_ms = math.ceil(ttl * 2000)  # the set itself outlives its last claim
        won = await self._acquire(
            keys=[gpu_slots_key(self._ns, server)], args=[capacity, holder, ttl, keep_ms]
        )
        return bool(won)

    async def renew(self, server: str, holder: str, ttl: float) -> None:
        await self._renew(
            keys=[gpu_slots_key(self._ns, server)], args=[holder, ttl, math.ceil(ttl * 2000)]
        )

    async def release(self, server: str, holder: str) -> None:
        await self._redis.zrem(gpu_slots_key(self._ns, server), holder)
