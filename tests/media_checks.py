"""Open generated files and check what they really are."""

from __future__ import annotations

import io

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
