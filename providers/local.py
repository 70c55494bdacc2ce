"""The built-in offline provider: real PNG images (Pillow), H.264 MP4 video and audio (PyAV), drawn
deterministically from the prompt and seed, with simulated latency and progress. Its speech says
the words when eSpeak NG is installed (the `speech` extra, `providers.espeak`); without it, one
short voiced tone per letter."""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import struct
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any, Literal

import av
from PIL import Image, ImageDraw

from providers import espeak
from providers.base import (
    GeneratedMedia,
    GenerationRequest,
    InputFile,
    ProviderInvalidRequestError,
    RunHooks,
    check_input_image,
    iter_chunks,
)
from providers.espeak import Espeak

SPEECH_RATE = 24_000
AUDIO_CONTAINERS: dict[str, tuple[str, str, str, int]] = {
    # format: (container, codec, content type, sample rate)
    "mp3": ("mp3", "libmp3lame", "audio/mpeg", SPEECH_RATE),
    "wav": ("wav", "pcm_s16le", "audio/wav", SPEECH_RATE),
    "opus": ("ogg", "libopus", "audio/ogg", 48_000),
    "flac": ("flac", "flac", "audio/flac", SPEECH_RATE),
}


def _palette(prompt: str, seed: int | None) -> bytes:
    return hashlib.sha256(f"{seed}:{prompt}".encode()).digest()


def _parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def render_edit(
    source: InputFile, prompt: str, size: str, seed: int | None, index: int = 0
) -> Image.Image:
    """An edit: the uploaded image, resized, blended with what the prompt alone would draw."""
    width, height = _parse_size(size)
    check_input_image(source.data)  # its size, before a pixel is decoded
    try:
        with Image.open(io.BytesIO(source.data)) as opened:
            base = opened.convert("RGB").resize((width, height))
    except (OSError, ValueError) as exc:
        raise ProviderInvalidRequestError(
            "the input image could not be decoded", public="The input image could not be decoded."
        ) from exc
    return Image.blend(base, render_image(prompt, size, seed, index), 0.35)


def render_image(prompt: str, size: str, seed: int | None, index: int = 0) -> Image.Image:
    """A gradient with shapes whose colours and placement derive from prompt, seed and index."""
    width, height = _parse_size(size)
    p = _palette(prompt, None if seed is None else seed + index)
    top, bottom = (p[0], p[1], p[2]), (p[3], p[4], p[5])
    strip = Image.new("RGB", (1, 256))
    strip.putdata(
        [tuple(int(top[c] + (bottom[c] - top[c]) * y / 255) for c in range(3)) for y in range(256)]
    )
    img = strip.resize((width, height))
    draw = ImageDraw.Draw(img)
    for i in range(6):
        b = p[6 + i * 4 : 10 + i * 4]
        cx, cy = b[0] * width // 255, b[1] * height // 255
        r = max(4, b[2] * min(width, height) // 1020)
        fill = (p[(i * 3) % 32], p[(i * 3 + 1) % 32], b[3])
        if i % 2:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    draw.text((8, height - 16), prompt[:60], fill=(255, 255, 255))
    return img


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def render_video(
    prompt: str,
    size: str,
    seconds: int,
    fps: int,
    seed: int | None,
    reference: InputFile | None = None,
) -> bytes:
    """An H.264 MP4 of a shape sweeping over the prompt's still image (or the reference image)."""
    width, height = _parse_size(size)
    if reference is None:
        base = render_image(prompt, size, seed)
    else:
        base = render_edit(reference, prompt, size, seed)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        total = seconds * fps
        radius = max(4, min(width, height) // 10)
        for n in range(total):
            frame_img = base.copy()
            draw = ImageDraw.Draw(frame_img)
            x = int((width - 2 * radius) * n / max(1, total - 1)) + radius
            y = height // 2 + int(math.sin(n / fps * math.pi) * height / 4)
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 255, 255))
            frame = av.VideoFrame.from_image(frame_img)  # type: ignore[no-untyped-call]
            frame.pts = n
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def synthesize_pcm(text: str, voice: str, rate: int) -> bytes:
    """Mono 16-bit PCM: one short voiced tone per letter, silence between words."""
    pitch = 110 + (hashlib.sha256(voice.encode()).digest()[0] % 8) * 20
    samples: list[int] = []
    syllable = int(rate * 0.07)
    for ch in text[:2000]:
        if not ch.isalnum():
            samples.extend([0] * (syllable // 2))
            continue
        freq = pitch * (1 + (ord(ch.lower()) % 12) / 12)
        for i in range(syllable):
            envelope = math.sin(math.pi * i / syllable)
            value = math.sin(2 * math.pi * freq * i / rate)
            value += 0.3 * math.sin(4 * math.pi * freq * i / rate)
            samples.append(int(12_000 * envelope * value))
    if not samples:
        samples = [0] * syllable
    return struct.pack(f"<{len(samples)}h", *samples)


def encode_audio(
    text: str, voice: str, fmt: str, speed: float = 1.0, engine: Espeak | None = None
) -> tuple[bytes, str]:
    """The speech in `fmt`: said by `engine` when there is one, else the tones."""
    container_name, codec, content_type, rate = AUDIO_CONTAINERS[fmt]
    if engine is not None:
        pcm, source_rate = engine.say(text[:4096], voice, speed), engine.rate
    else:
        pcm, source_rate = synthesize_pcm(text, voice, rate), rate
    if not pcm:
        pcm = bytes(2 * (source_rate // 10))  # nothing to say: a tenth of a second of silence
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    frame_samples = 1024
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_name) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.audio.stream.AudioStream)
        pts = 0
        for offset in range(0, len(pcm), frame_samples * 2):
            chunk = pcm[offset : offset + frame_samples * 2]
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(chunk) // 2)
            frame.planes[0].update(chunk)
            frame.sample_rate = source_rate
            frame.pts = pts
            frame.time_base = Fraction(1, source_rate)
            pts += len(chunk) // 2
            for resampled in resampler.resample(frame):
                container.mux(stream.encode(resampled))
        for resampled in resampler.resample(None):
            container.mux(stream.encode(resampled))
        container.mux(stream.encode(None))
    return buf.getvalue(), content_type


class LocalProvider:
    """Makes media offline; `latency_seconds` is spread over `progress_steps` progress reports."""

    name = "local"

    def __init__(
        self,
        *,
        latency_seconds: float = 0.0,
        progress_steps: int = 4,
        voice: Espeak | Literal["auto"] | None = "auto",
    ) -> None:
        self._latency = latency_seconds
        self._steps = max(1, progress_steps)
        self._voice = espeak.engine() if voice == "auto" else voice
        """eSpeak NG when the `speech` extra is installed (`auto`); None: the tones."""

    async def _simulate(self, hooks: RunHooks, share: float, done: float) -> None:
        for step in range(self._steps):
            if self._latency:
                await asyncio.sleep(self._latency * share / self._steps)
            await hooks.progress(int(100 * (done + share * (step + 1) / self._steps) * 0.9))

    async def generate(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        params: dict[str, Any] = dict(request.params)
        if request.type == "image":
            n = int(params.get("n", 1))
            source = request.files.get("image")
            for index in range(n):
                await self._simulate(hooks, 1 / n, index / n)
                args = (params["prompt"], params["size"], params.get("seed"), index)
                if source is None:
                    img = await asyncio.to_thread(render_image, *args)
                else:
                    img = await asyncio.to_thread(render_edit, source, *args)
                data = await asyncio.to_thread(encode_png, img)
                yield GeneratedMedia("image/png", "png", iter_chunks(data))
        elif request.type == "video":
            await self._simulate(hooks, 1.0, 0.0)
            data = await asyncio.to_thread(
                render_video,
                params["prompt"],
                params["size"],
                int(params["seconds"]),
                int(params.get("fps") or 24),
                params.get("seed"),
                request.files.get("input_reference"),
            )
            yield GeneratedMedia("video/mp4", "mp4", iter_chunks(data))
        elif request.type == "speech":
            await self._simulate(hooks, 1.0, 0.0)
            fmt = params.get("format", "mp3")
            data, content_type = await asyncio.to_thread(
                encode_audio,
                params["input"],
                params.get("voice") or "alloy",
                fmt,
                float(params.get("speed") or 1.0),
                self._voice,
            )
            yield GeneratedMedia(content_type, fmt, iter_chunks(data))
        else:
            message = f"The local provider cannot make {request.type!r}."
            raise ProviderInvalidRequestError(message, public=message)

    async def cancel(self, task_id: str) -> None:
        return None  # local work has no upstream task

    async def aclose(self) -> None:
        return None
