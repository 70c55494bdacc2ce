"""The files store (`MEDIAGATE_STORAGE=files`, what `mediagate dev` uses): objects whole or not
at all, byte ranges, listings by prefix, deletes, and keys that cannot leave its directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from providers.base import iter_chunks
from storage.base import CHUNK_SIZE, StorageError, StorageNotFoundError
from storage.files import FileStore


async def _read(store: FileStore, key: str, **span: int) -> bytes:
    return b"".join([chunk async for chunk in store.iter_bytes(key, **span)])


async def test_put_read_range_list_delete(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.ensure_root()
    data = bytes(range(256)) * (CHUNK_SIZE // 100)
    assert await store.put("key_a/job_1/1-x/0.png", iter_chunks(data), content_type="image/png")
    await store.put("key_a/job_2/1-y/0.mp4", iter_chunks(b"video"), content_type="video/mp4")
    await store.put("key_b/job_3/1-z/0.png", iter_chunks(b"other"), content_type="image/png")
    assert await _read(store, "key_a/job_1/1-x/0.png") == data
    assert await _read(store, "key_a/job_1/1-x/0.png", start=10, end=70_000) == data[10:70_001]
    head = await store.head("key_a/job_2/1-y/0.mp4")
    assert head is not None and (head.size, head.content_type) == (5, "video/mp4")
    listed = [info.key async for info in store.list_objects("key_a/")]
    assert listed == ["key_a/job_1/1-x/0.png", "key_a/job_2/1-y/0.mp4"]
    assert await store.delete_prefix("key_a/") == 2
    assert [info.key async for info in store.list_objects("")] == ["key_b/job_3/1-z/0.png"]
    await store.delete_many(["key_b/job_3/1-z/0.png", "key_b/never"])
    assert await store.head("key_b/job_3/1-z/0.png") is None
    with pytest.raises(StorageNotFoundError):
        await _read(store, "key_b/job_3/1-z/0.png")


async def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.ensure_root()
    await store.put("key_a/o.png", iter_chunks(b"before"), content_type="image/png")

    async def broken() -> AsyncIterator[bytes]:
        yield b"half"
        raise RuntimeError("the provider's stream broke")

    with pytest.raises(RuntimeError):
        await store.put("key_a/o.png", broken(), content_type="image/png")
    with pytest.raises(RuntimeError):
        await store.put("key_a/new.png", broken(), content_type="image/png")
    assert await _read(store, "key_a/o.png") == b"before"
    assert await store.head("key_a/new.png") is None
    assert [info.key async for info in store.list_objects("")] == ["key_a/o.png"]


@pytest.mark.parametrize(
    "key", ["../escape", "a/../../b", "/etc/passwd", "a//b", "", "a/\x00", ".partial/x"]
)
async def test_keys_stay_inside_the_directory(tmp_path: Path, key: str) -> None:
    store = FileStore(tmp_path / "media")
    await store.ensure_root()
    with pytest.raises(StorageError):
        await store.put(key, iter_chunks(b"x"), content_type="image/png")
    assert not (tmp_path / "escape").exists()
