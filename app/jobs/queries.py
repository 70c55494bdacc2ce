"""Reading a key's jobs: one job (another key's, a deleted one, or one of another type is not
found, alike) and pages of them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.platform.errors import InvalidRequestError, NotFoundError
from app.platform.tables import Job
from app.platform.vocabulary import JobStatus
from providers.base import MediaType

MAX_PAGE = 100


async def get_job(
    session: AsyncSession, key_id: str | None, job_id: str, media_type: MediaType | None = None
) -> Job:
    """The key's job (of `media_type`, if given); another key's, a deleted one or one of another
    type is not found, alike. `key_id` None: the operator's view (any key's job)."""
    job = await session.get(Job, job_id)
    if (
        job is None
        or (key_id is not None and job.key_id != key_id)
        or job.deleted_at is not None
        or (media_type is not None and job.type != media_type)
    ):
        noun = "job" if media_type is None else str(media_type)
        raise NotFoundError(f"No {noun} found with id {job_id!r}.", param="id")
    return job


async def list_jobs(
    session: AsyncSession,
    key_id: str,
    *,
    status: str | None = None,
    media_type: str | None = None,
    limit: int = 20,
    after: str | None = None,
    oldest_first: bool = False,
) -> tuple[Sequence[Job], bool]:
    """Newest first (or oldest first); `after` is the last id of the previous page.
    Returns (page, has_more)."""
    if status is not None and status not in tuple(JobStatus):
        raise InvalidRequestError(f"status must be one of {', '.join(JobStatus)}", param="status")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_PAGE}", param="limit")
    query = select(Job).where(Job.key_id == key_id, col(Job.deleted_at).is_(None))
    if media_type is not None:
        query = query.where(Job.type == media_type)
    if status is not None:
        query = query.where(Job.status == status)
    if after is not None:
        query = query.where(col(Job.id) > after if oldest_first else col(Job.id) < after)
    order = col(Job.id).asc() if oldest_first else col(Job.id).desc()
    rows = (await session.exec(query.order_by(order).limit(limit + 1))).all()
    return rows[:limit], len(rows) > limit
