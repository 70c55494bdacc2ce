"""The shapes of the operators' endpoints."""

from __future__ import annotations

from typing import Literal

from app.http.schemas import ListModel, ResponseModel
from app.platform.liveness import Heartbeat


class WorkerObject(ResponseModel):
    id: str
    object: Literal["worker"] = "worker"
    host: str
    pid: int
    concurrency: int
    running: int
    """Generation jobs it runs now."""
    started_at: float
    """Unix time."""
    last_seen: float
    """Unix time of its last heartbeat."""

    @classmethod
    def of(cls, beat: Heartbeat) -> WorkerObject:
        return WorkerObject(
            id=beat.id,
            host=beat.host,
            pid=beat.pid,
            concurrency=beat.concurrency,
            running=beat.running,
            started_at=beat.started_at,
            last_seen=beat.last_seen,
        )


class WorkerList(ListModel):
    data: list[WorkerObject]
