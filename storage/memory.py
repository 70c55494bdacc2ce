"""In-process storage for development and tests: objects live in a dict and die with the process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from storage.base import CHUNK_SIZE, ObjectInfo, StorageNotFoundError


@dataclass(slots=True)
class _Object:
    data: bytes
    content_type: str
    modified: float


class MemoryStore:
    """A MediaStore kept in memory; the API serves its bytes itself (`url()` is None)."""

    def __init__(self) -> None:
        self._objects: dict[str, _Object] = {}
        self._lock = asyncio.Lock()

    async def put(
        self,
        key: str,
        data: AsyncIterable[bytes],
        *,
        content_type: str,
        filename: str | None = None,
    ) -> int:
        # Collect first so a failing stream leaves the previous object (or nothing) behind.
        parts = [chunk async for chunk in data]
        blob = b"".join(parts)
        async with self._lock:
            self._objects[key] = _Object(blob, content_type, time.time())
        return len(blob)

    async def iter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        obj = self._objects.get(key)
        if obj is None:
            raise StorageNotFoundError(f"no object {key!r}")
        stop = len(obj.data) if end is None else min(end + 1, len(obj.data))
        view = memoryview(obj.data)
        for offset in range(start, stop, CHUNK_SIZE):
            yield bytes(view[offset : min(offset + CHUNK_SIZE, stop)])

    async def head(self, key: str) -> ObjectInfo | None:
        obj = self._objects.get(key)
        return None if obj is None else ObjectInfo(key, len(obj.data), obj.content_type)

    async def delete(self, key: str) -> None:
        async with self._lock:
            self._objects.pop(key, None)

    async def delete_many(self, keys: list[str]) -> int:
        async with self._lock:
            for key in keys:
                self._objects.pop(key, None)
        return len(keys)

    async def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for key, obj in sorted(self._objects.items()):
            if key.startswith(prefix):
                yield ObjectInfo(key, len(obj.data), obj.content_type, obj.modified)

    async def delete_prefix(self, prefix: str) -> int:
        async with self._lock:
            doomed = [k for k in self._objects if k.startswith(prefix)]
            for k in doomed:
                del self._objects[k]
        return len(doomed)

    async def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
