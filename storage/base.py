"""The MediaStore protocol every storage backend implements, and storage's error tree.

StorageError
 └── StorageNotFoundError   the key does not exist
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

CHUNK_SIZE = 64 * 1024


class StorageError(Exception):
    """A storage backend failed; the message never contains object bytes."""


class StorageNotFoundError(StorageError):
    """The object does not exist."""


DELETE_BATCH = 1000
"""Keys per delete request (S3's DeleteObjects takes at most 1,000)."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str
    modified: float = 0.0
    """Last modified, as a Unix time (listings carry it; 0 when unknown)."""


@runtime_checkable
class MediaStore(Protocol):
    """Streams objects in and out; keys are `/`-separated paths chosen by the caller."""

    async def put(
        self,
        key: str,
        data: AsyncIterable[bytes],
        *,
        content_type: str,
        filename: str | None = None,
    ) -> int:
        """Store `data` under `key` (overwriting), return the number of bytes written.

        On failure nothing is left under `key` that was not there before.
        """
        ...

    def iter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield the object's bytes from `start` to `end` (inclusive), in chunks."""
        ...

    async def head(self, key: str) -> ObjectInfo | None: ...

    async def delete(self, key: str) -> None: ...

    async def delete_many(self, keys: list[str]) -> int:
        """Delete these objects (missing ones are fine), in batches; return how many were asked."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix`; return how many."""
        ...

    def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, with size and modification time."""
        ...

    async def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        """A URL a browser can fetch directly, or None when the API must serve the bytes."""
        ...

    async def ping(self) -> None:
        """Raise StorageError when the backend does not answer."""
        ...

    async def close(self) -> None: ...
