"""Thumbnails of video outputs: the stream is copied to a spooled temporary file on its way to
storage (memory for small videos, disk beyond), then one frame is decoded into a WebP still."""

from __future__ import annotations

import io
import tempfile
from collections.abc import AsyncIterator

import av
from PIL import Image

SPOOL_IN_MEMORY = 8 * 1024 * 1024
THUMBNAIL_SIZE = (640, 640)


class Spool:
    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115

    async def tee(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.file.write(chunk)
            yield chunk

    def close(self) -> None:
        self.file.close()


def thumbnail_of(spool: Spool) -> bytes | None:
    """A WebP still from the start of the video, or None if it cannot be decoded."""
    spool.file.seek(0)
    try:
        with av.open(spool.file, mode="r") as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
                break
            else:
                return None
    except (av.error.FFmpegError, IndexError, ValueError, OSError):
        return None
    image.thumbnail(THUMBNAIL_SIZE)
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=80)
    return out.getvalue()
