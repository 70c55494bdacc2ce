"""Open generated files and check what they really are."""

from __future__ import annotations

import io
import struct
import zlib

import av
from PIL import Image


def png_size(data: bytes) -> tuple[int, int]:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    img.load()
    return img.size


def mp4_facts(data: bytes) -> tuple[float, int, int, str]:
    """(duration seconds, width, height, codec)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        fps = float(stream.average_rate or stream.guessed_rate or 1)
        return frames / fps, stream.width, stream.height, stream.codec_context.name


def audio_samples(data: bytes) -> tuple[int, int]:
    """(decoded samples, sample rate)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        total = sum(frame.samples for frame in container.decode(audio=0))
        return total, stream.rate


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def declared_png(width: int = 13_000, height: int = 13_000) -> bytes:
    """A PNG of a few dozen bytes that declares width x height RGB pixels (169 megapixels by
    default: about half a gigabyte decoded)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )
