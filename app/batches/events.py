"""A batch's own event stream, fed by its jobs' endings: the epilogue the jobs domain adds to a
batch job's terminal event (`app.jobs.events`), in the same atomic script. Each job's ending is
appended to the batch's stream exactly once (the job's terminal marker fences it), numbered
there; the batch's last job appends `batch.completed` after it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from app.platform.events import EventBus
from app.platform.lua import Lua, Part
from app.platform.redis_keys import events_meta_key, events_stream_key
from app.platform.vocabulary import TERMINAL_EVENTS, BatchEvent

BATCH_STREAM_MAXLEN = 2 * 1000 + 10
"""A batch's stream holds an ending per job (up to 1,000, twice for jobs an operator retried)."""

_BATCH_ENDING = Lua(
    """
if not redis.call('HGET', $batch_meta, 'terminal') then
  local bseq = redis.call('HINCRBY', $batch_meta, 'seq', 1)
  redis.call('XADD', $batch_stream, 'MAXLEN', '~', $batch_maxlen, bseq .. '-0',
             'event', $event, 'data', $data)
  redis.call('PUBLISH', $channel, $batch_id .. '\\n' .. bseq .. '\\n' .. $event .. '\\n' .. $data)
  local ended = redis.call('HINCRBY', $batch_meta, 'ended', 1)
  local total = tonumber(redis.call('HGET', $batch_meta, 'total') or '0')
  if total > 0 and ended >= total then
    bseq = redis.call('HINCRBY', $batch_meta, 'seq', 1)
    local done = '{"id":"' .. $batch_id .. '"}'
    redis.call('XADD', $batch_stream, 'MAXLEN', '~', $batch_maxlen, bseq .. '-0',
               'event', $completed, 'data', done)
    redis.call('HSET', $batch_meta, 'terminal', $completed)
    redis.call('PUBLISH', $channel,
               $batch_id .. '\\n' .. bseq .. '\\n' .. $completed .. '\\n' .. done)
  end
  redis.call('EXPIRE', $batch_stream, $ttl)
  redis.call('EXPIRE', $batch_meta, $ttl)
end
""",
    keys=("batch_stream", "batch_meta"),
    args=("batch_id", "batch_maxlen", "completed"),
)


def batch_ending(namespace: str, event: str, snapshot: Mapping[str, Any]) -> Part | None:
    """The epilogue for a job's event: its batch's part, for the ending of a batch's job."""
    batch_id = snapshot.get("batch_id")
    if event not in TERMINAL_EVENTS or not batch_id:
        return None
    return _BATCH_ENDING, {
        "batch_stream": events_stream_key(namespace, batch_id),
        "batch_meta": events_meta_key(namespace, batch_id),
        "batch_id": batch_id,
        "batch_maxlen": BATCH_STREAM_MAXLEN,
        "completed": BatchEvent.COMPLETED,
    }


async def open_stream(redis: Redis, bus: EventBus, batch_id: str, total: int) -> None:
    """Say how many jobs the batch has, so its last job's end closes its stream (kept if
    already said: a stream that Redis lost is told again when someone follows it)."""
    meta = events_meta_key(bus.namespace, batch_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hsetnx(meta, "total", str(total))
        pipe.expire(meta, bus.ttl_seconds)
        await pipe.execute()
