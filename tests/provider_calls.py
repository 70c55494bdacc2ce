"""Calling a provider directly (no API, no worker) against its emulator: the hooks it reports
to, draining its outputs, and the same request resumed from a task an earlier call recorded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from providers.base import GenerationRequest


class Hooks:
    """What a provider told the worker: progress and the upstream tasks it started."""

    def __init__(self) -> None:
        self.progress_seen: list[int] = []
        self.tasks: list[str | None] = []

    async def progress(self, percent: int) -> None:
        self.progress_seen.append(percent)

    async def task_started(self, task_id: str | None) -> None:
        self.tasks.append(task_id)

    @property
    def last_task(self) -> str | None:
        return self.tasks[-1] if self.tasks else None


async def outputs(
    provider: Any, request: GenerationRequest, hooks: Hooks | None = None
) -> list[tuple[str, bytes]]:
    """Every output's content type and bytes."""
    found = []
    async for media in provider.generate(request, hooks or Hooks()):
        data = b"".join([chunk async for chunk in media.chunks])
        found.append((media.content_type, data))
    return found


async def drain(provider: Any, request: GenerationRequest, hooks: Hooks | None = None) -> int:
    return len(await outputs(provider, request, hooks))


def resumed(request: GenerationRequest, task_id: str | None) -> GenerationRequest:
    """The same request, as a retry that found `task_id` recorded on its job."""
    return replace(request, task_id=task_id)
