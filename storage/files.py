"""A directory on local disk as a MediaStore: what `mediagate dev` keeps its outputs in, so they
survive a restart as its SQLite database does; also usable by a single machine (every process on
it may share the directory). Object keys become paths under the root; the API serves the bytes."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from storage.base import CHUNK_SIZE, ObjectInfo, StorageError, StorageNotFoundError

PARTIAL_DIR = ".partial"
"""Objects are written here first and moved into place whole: a reader never sees half of one,
and a failed write leaves nothing under its key."""


class FileStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if (
            not key
            or "\x00" in key
            or any(part in ("", ".", "..", PARTIAL_DIR) for part in parts)
            or key.startswith("/")
        ):
            raise StorageError("not a valid object key")
        return self.root.joinpath(*parts)

    async def ensure_root(self) -> None:
        await asyncio.to_thread((self.root / PARTIAL_DIR).mkdir, parents=True, exist_ok=True)

    async def put(
        self,
        key: str,
        data: AsyncIterable[bytes],
        *,
        content_type: str,
        filename: str | None = None,
    ) -> int:
        target = self._path(key)
        partial = self.root / PARTIAL_DIR / f"{secrets.token_hex(8)}.part"
        total = 0
        try:
            handle = await asyncio.to_thread(partial.open, "wb")
            try:
                async for chunk in data:
                    await asyncio.to_thread(handle.write, chunk)
                    total += len(chunk)
            finally:
                await asyncio.to_thread(handle.close)
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(os.replace, partial, target)
        except OSError as exc:
            raise StorageError(f"writing {key!r} failed: {exc.strerror}") from exc
        finally:
            partial.unlink(missing_ok=True)
        return total

    async def iter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise StorageNotFoundError(f"no object {key!r}") from None
        except OSError as exc:
            raise StorageError(f"reading {key!r} failed: {exc.strerror}") from exc
        try:
            await asyncio.to_thread(handle.seek, start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                chunk = await asyncio.to_thread(handle.read, size)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    def _info(self, key: str, path: Path) -> ObjectInfo | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return ObjectInfo(key, stat.st_size, content_type, stat.st_mtime)

    async def head(self, key: str) -> ObjectInfo | None:
        return await asyncio.to_thread(self._info, key, self._path(key))

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def delete_many(self, keys: list[str]) -> int:
        paths = [self._path(key) for key in keys]

        def unlink_all() -> None:
            for path in paths:
                path.unlink(missing_ok=True)

        await asyncio.to_thread(unlink_all)
        return len(keys)

    def _walk(self, prefix: str) -> list[ObjectInfo]:
        found = []
        for directory, folders, files in os.walk(self.root):
            folders[:] = sorted(
                f for f in folders if f != PARTIAL_DIR or directory != str(self.root)
            )
            for name in sorted(files):
                path = Path(directory, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix) and (info := self._info(key, path)) is not None:
                    found.append(info)
        return found

    async def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for info in await asyncio.to_thread(self._walk, prefix):
            yield info

    async def delete_prefix(self, prefix: str) -> int:
        doomed = [info.key for info in await asyncio.to_thread(self._walk, prefix)]
        await self.delete_many(doomed)
        return len(doomed)

    async def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        return None

    async def ping(self) -> None:
        if not await asyncio.to_thread(os.access, self.root, os.W_OK):
            raise StorageError("the media directory is not writable")

    async def close(self) -> None:
        return None
