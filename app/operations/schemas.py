"""The shapes of the operators' endpoints."""

from __future__ import annotations

from dataclasses import asdict
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
    throughput: float
    """Jobs it ended a second, over the last five minutes."""

    @classmethod
    def of(cls, beat: Heartbeat) -> WorkerObject:
        return WorkerObject(**asdict(beat))


class WorkerList(ListModel):
    data: list[WorkerObject]
