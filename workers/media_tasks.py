"""The media lifecycle's worker tasks: purging a deleted key's media, and the cron tasks that sweep
expired media, resume unfinished purges and reconcile storage with the database."""

from __future__ import annotations

import logging
from typing import Any

from app.media import lifecycle
from app.platform.redis_keys import purge_job_id
from app.platform.resources import Resources
from app.platform.tasks import PURGE_KEY_TASK
from workers.lease import held_lease

log = logging.getLogger("mediagate.worker")


async def purge_key_media(ctx: dict[str, Any], key_id: str) -> int:
    res: Resources = ctx["resources"]
    async with held_lease(res, purge_job_id(key_id)):
        return await lifecycle.purge_key(res, key_id)


async def sweep_expired_media(ctx: dict[str, Any]) -> int:
    res: Resources = ctx["resources"]
    return await lifecycle.sweep_expired(res)


async def resume_purges(ctx: dict[str, Any]) -> int:
    """A safety net: re-enqueue purges that lost their arq job (Redis flushed, say). arq ignores
    an enqueue whose job id is already queued or running."""
    res: Resources = ctx["resources"]
    async with res.sessionmaker() as session:
        key_ids = await lifecycle.unfinished_purges(session)
    for key_id in key_ids:
        await res.redis.enqueue_job(PURGE_KEY_TASK, key_id, _job_id=purge_job_id(key_id))
    return len(key_ids)


async def reconcile_storage(ctx: dict[str, Any]) -> dict[str, int]:
    res: Resources = ctx["resources"]
    return (await lifecycle.reconcile(res, fix=True)).as_dict()
