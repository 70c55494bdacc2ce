"""The model catalog: every model a client may name, its media type, provider and limits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from providers.base import MediaType

IMAGE_SIZES = (
    "256x256",
    "512x512",
    "1024x1024",
    "1024x1536",
    "1536x1024",
    "1792x1024",
    "1024x1792",
)
VIDEO_SIZES = ("320x180", "640x360", "854x480", "1280x720", "720x1280", "1920x1080")
SPEECH_FORMATS = ("mp3", "wav", "opus", "flac")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    type: MediaType
    provider: str
    provider_model: str
    sizes: tuple[str, ...] = ()
    max_n: int = 1
    min_seconds: int = 1
    max_seconds: int = 0
    fps: tuple[int, ...] = ()
    formats: tuple[str, ...] = ()
    voices: tuple[str, ...] = ()
    max_input_chars: int = 4096
    max_prompt_chars: int = 4000
    created: int = 1_767_225_600  # 2026-01-01, for OpenAI's model list shape
    aliases: tuple[str, ...] = field(default=())


LOCAL_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="local-image",
        type="image",
        provider="local",
        provider_model="local-image",
        sizes=IMAGE_SIZES,
        max_n=4,
    ),
    ModelSpec(
        name="local-video",
        type="video",
        provider="local",
        provider_model="local-video",
        sizes=VIDEO_SIZES,
        max_seconds=12,
        fps=(12, 24, 25, 30),
    ),
    ModelSpec(
        name="local-speech",
        type="speech",
        provider="local",
        provider_model="local-speech",
        formats=SPEECH_FORMATS,
        voices=("alloy", "echo", "fable", "onyx", "nova", "shimmer"),
    ),
)


class Catalog:
    """Looks models up by name; a later catalog adds upstream providers and aliases."""

    def __init__(self, models: Iterable[ModelSpec]) -> None:
        self._models = {m.name: m for m in models}

    def get(self, name: str) -> ModelSpec | None:
        return self._models.get(name)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._models.values())


def default_catalog() -> Catalog:
    return Catalog(LOCAL_MODELS)
