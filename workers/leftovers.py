"""What earlier attempts of a job stored but never recorded (their worker died between the upload
and the commit): deleted when a later attempt ends. Those attempts are fenced out, so no row
will ever point at such an object; a failure here only leaves them to reconciliation."""

from __future__ import annotations

import logging

from sqlmodel import col, select

from app.media.storage_keys import job_prefix, parse
from app.platform.resources import Resources
from app.platform.tables import Job, MediaObject
from storage.base import StorageError

log = logging.getLogger("mediagate.worker")


async def sweep_earlier_attempts(res: Resources, job: Job, attempt: int) -> None:
    async with res.sessionmaker() as session:
        rows = await session.exec(
            select(MediaObject.storage_key).where(
                MediaObject.job_id == job.id, col(MediaObject.deleted_at).is_(None)
            )
        )
        live = set(rows.all())
    try:
        leftovers = []
        async for info in res.store.list_objects(job_prefix(job.key_id, job.id)):
            written_by = parse(info.key).attempt
            if info.key not in live and written_by is not None and written_by < attempt:
                leftovers.append(info.key)
        if leftovers:
            await res.store.delete_many(leftovers)
            log.info("job.leftovers_deleted job_id=%s count=%d", job.id, len(leftovers))
    except StorageError as exc:
        log.warning("job.leftovers_kept job_id=%s error=%s", job.id, type(exc).__name__)
