"""The model catalog: every model a client may name, its media type, provider and limits.

Canonical names are `provider/model` (`openai/dall-e-3`, `minimax/image-01`); OpenAI's bare
names (`dall-e-3`, `sora-2`, `tts-1`) and the local models' names resolve too, so code written for
OpenAI's SDK works unchanged. Operators add aliases (with fallback targets) in the database; this
module only knows the built-in and configured models.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from providers.base import MEDIA_TYPES, MediaType
from providers.prices import BUILTIN_PRICES, Price, PriceError, price_from_config

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
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
)
SORA_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
MINIMAX_ASPECTS = ("1:1", "16:9", "4:3", "3:2", "2:3", "3:4", "9:16", "21:9")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    type: MediaType
    provider: str
    provider_model: str
    sizes: tuple[str, ...] = ()
    default_size: str | None = None
    max_n: int = 1
    min_seconds: int = 1
    max_seconds: int = 0
    seconds: tuple[int, ...] = ()
    """When set, the only durations the model accepts (else min..max)."""
    fps: tuple[int, ...] = ()
    formats: tuple[str, ...] = ()
    voices: tuple[str, ...] = ()
    open_voices: bool = False
    """Any voice the provider knows (its own names or ids) besides `voices`, which lists the
    common ones and whose first is the default: the provider resolves it."""
    qualities: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    aspect_ratios: tuple[str, ...] = ()
    edits: bool = False
    """Takes an input `image` (image models) or `input_reference` (video models)."""
    speed: bool = False
    instructions: bool = False
    negative_prompt: bool = False
    """Takes a `negative_prompt` (what the image should not show)."""
    max_steps: int = 0
    """Takes `steps` (sampling steps) up to this many; 0: does not."""
    max_input_chars: int = 4096
    max_prompt_chars: int = 4000
    created: int = 1_767_225_600  # 2026-01-01, for OpenAI's model list shape
    aliases: tuple[str, ...] = field(default=())
    price: Price | None = None
    """What it costs (providers/prices.py); None: unpriced, its jobs show no cost."""

    @property
    def size_default(self) -> str:
        return self.default_size or self.sizes[min(2, len(self.sizes) - 1)]


LOCAL_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="local-image",
        type=MediaType.IMAGE,
        provider="local",
        provider_model="local-image",
        sizes=IMAGE_SIZES,
        max_n=4,
        edits=True,
        aliases=("local/image",),
    ),
    ModelSpec(
        name="local-video",
        type=MediaType.VIDEO,
        provider="local",
        provider_model="local-video",
        sizes=VIDEO_SIZES,
        default_size="640x360",
        max_seconds=12,
        fps=(12, 24, 25, 30),
        edits=True,
        aliases=("local/video",),
    ),
    ModelSpec(
        name="local-speech",
        type=MediaType.SPEECH,
        provider="local",
        provider_model="local-speech",
        formats=SPEECH_FORMATS,
        voices=OPENAI_VOICES,
        speed=True,
        instructions=True,
        aliases=("local/speech",),
    ),
)

OPENAI_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="openai/dall-e-2",
        type=MediaType.IMAGE,
        provider="openai",
        provider_model="dall-e-2",
        sizes=("256x256", "512x512", "1024x1024"),
        max_n=10,
        max_prompt_chars=1000,
        edits=True,
        aliases=("dall-e-2",),
    ),
    ModelSpec(
        name="openai/dall-e-3",
        type=MediaType.IMAGE,
        provider="openai",
        provider_model="dall-e-3",
        sizes=("1024x1024", "1792x1024", "1024x1792"),
        default_size="1024x1024",
        qualities=("standard", "hd"),
        styles=("vivid", "natural"),
        aliases=("dall-e-3",),
    ),
    ModelSpec(
        name="openai/gpt-image-1",
        type=MediaType.IMAGE,
        provider="openai",
        provider_model="gpt-image-1",
        sizes=("1024x1024", "1536x1024", "1024x1536"),
        default_size="1024x1024",
        max_n=10,
        qualities=("low", "medium", "high", "auto"),
        max_prompt_chars=32_000,
        edits=True,
        aliases=("gpt-image-1",),
    ),
    ModelSpec(
        name="openai/sora-2",
        type=MediaType.VIDEO,
        provider="openai",
        provider_model="sora-2",
        sizes=SORA_SIZES[:2],
        default_size="720x1280",
        seconds=(4, 8, 12),
        edits=True,
        aliases=("sora-2",),
    ),
    ModelSpec(
        name="openai/sora-2-pro",
        type=MediaType.VIDEO,
        provider="openai",
        provider_model="sora-2-pro",
        sizes=SORA_SIZES,
        default_size="720x1280",
        seconds=(4, 8, 12),
        edits=True,
        aliases=("sora-2-pro",),
    ),
    *(
        ModelSpec(
            name=f"openai/{model}",
            type=MediaType.SPEECH,
            provider="openai",
            provider_model=model,
            formats=("mp3", "opus", "aac", "flac", "wav", "pcm"),
            voices=OPENAI_VOICES,
            speed=True,
            instructions=model == "gpt-4o-mini-tts",
            aliases=(model,),
        )
        for model in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
    ),
)

MINIMAX_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="minimax/image-01",
        type=MediaType.IMAGE,
        provider="minimax",
        provider_model="image-01",
        sizes=("1024x1024", "1280x720", "720x1280", "1152x864", "864x1152", "1248x832"),
        default_size="1024x1024",
        max_n=9,
        aspect_ratios=MINIMAX_ASPECTS,
        max_prompt_chars=1500,
        edits=True,
    ),
    ModelSpec(
        name="minimax/MiniMax-Hailuo-02",
        type=MediaType.VIDEO,
        provider="minimax",
        provider_model="MiniMax-Hailuo-02",
        sizes=("1366x768", "1920x1080"),
        default_size="1366x768",
        seconds=(6, 10),
        max_prompt_chars=2000,
        edits=True,
        aliases=("minimax/hailuo-02",),
    ),
)

REPLICATE_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="replicate/black-forest-labs/flux-schnell",
        type=MediaType.IMAGE,
        provider="replicate",
        provider_model="black-forest-labs/flux-schnell",
        sizes=("1024x1024", "1344x768", "768x1344", "1216x832", "832x1216"),
        default_size="1024x1024",
        max_n=4,
    ),
    ModelSpec(
        name="replicate/minimax/video-01",
        type=MediaType.VIDEO,
        provider="replicate",
        provider_model="minimax/video-01",
        sizes=("1280x720",),
        seconds=(6,),
        edits=True,
    ),
    ModelSpec(
        name="replicate/minimax/speech-02-turbo",
        type=MediaType.SPEECH,
        provider="replicate",
        provider_model="minimax/speech-02-turbo",
        formats=("mp3",),
        voices=("Wise_Woman", "Friendly_Person", "Deep_Voice_Man", "Calm_Woman", "Casual_Guy"),
    ),
)

ELEVENLABS_VOICES = (
    "Rachel",
    "Adam",
    "Antoni",
    "Bella",
    "Domi",
    "Elli",
    "Josh",
    "Arnold",
    "Sam",
)
"""ElevenLabs' premade voices (the first is the default); any of the account's voices may be
named too, by name or id."""

ELEVENLABS_MODELS: tuple[ModelSpec, ...] = tuple(
    ModelSpec(
        name=f"elevenlabs/{model}",
        type=MediaType.SPEECH,
        provider="elevenlabs",
        provider_model=model,
        formats=("mp3", "opus", "pcm", "wav"),
        voices=ELEVENLABS_VOICES,
        open_voices=True,
        max_input_chars=chars,
    )
    for model, chars in (
        ("eleven_multilingual_v2", 10_000),
        ("eleven_v3", 5_000),
        ("eleven_flash_v2_5", 40_000),
        ("eleven_turbo_v2_5", 40_000),
    )
)

IMAGEN_SIZES = ("1024x1024", "896x1280", "1280x896", "768x1408", "1408x768")
"""Imagen's aspect ratios (1:1, 3:4, 4:3, 9:16, 16:9) at its sizes."""

GOOGLE_MODELS: tuple[ModelSpec, ...] = (
    *(
        ModelSpec(
            name=f"google/{model}",
            type=MediaType.IMAGE,
            provider="google",
            provider_model=model,
            sizes=IMAGEN_SIZES,
            default_size="1024x1024",
            max_n=4,
            max_prompt_chars=1920,  # 480 tokens
        )
        for model in (
            "imagen-4.0-generate-001",
            "imagen-4.0-fast-generate-001",
            "imagen-4.0-ultra-generate-001",
        )
    ),
    *(
        ModelSpec(
            name=f"google/{model}",
            type=MediaType.VIDEO,
            provider="google",
            provider_model=model,
            sizes=sizes,
            default_size="1280x720",
            seconds=seconds,
            edits=True,
        )
        for model, sizes, seconds in (
            ("veo-3.0-generate-001", ("1280x720", "1920x1080"), (8,)),
            ("veo-3.0-fast-generate-001", ("1280x720", "1920x1080"), (8,)),
            ("veo-2.0-generate-001", ("1280x720", "720x1280"), (5, 6, 7, 8)),
        )
    ),
)

FLUX_SIZES = ("512x512", "1024x1024", "1024x768", "768x1024", "1344x768", "768x1344")
KOKORO_VOICES = ("af_heart", "af_bella", "am_adam", "am_michael", "bf_emma", "bm_george")

FAL_MODELS: tuple[ModelSpec, ...] = (
    *(
        ModelSpec(
            name=f"fal/{model}",
            type=MediaType.IMAGE,
            provider="fal",
            provider_model=model,
            sizes=FLUX_SIZES,
            default_size="1024x1024",
            max_n=4,
        )
        for model in ("fal-ai/flux/schnell", "fal-ai/flux/dev", "fal-ai/flux-pro/v1.1")
    ),
    ModelSpec(
        name="fal/fal-ai/kling-video/v2.1/master/text-to-video",
        type=MediaType.VIDEO,
        provider="fal",
        provider_model="fal-ai/kling-video/v2.1/master/text-to-video",
        sizes=("1280x720", "720x1280", "1080x1080"),
        default_size="1280x720",
        seconds=(5, 10),
        max_prompt_chars=2500,
    ),
    ModelSpec(
        name="fal/fal-ai/kokoro/american-english",
        type=MediaType.SPEECH,
        provider="fal",
        provider_model="fal-ai/kokoro/american-english",
        formats=("wav",),
        voices=KOKORO_VOICES,
        speed=True,
    ),
)
"""A few of fal's media models; any other is one models-file entry away (provider `fal`,
provider_model its id): our parameters go in the names fal's models share."""

BUILTIN_MODELS = (
    LOCAL_MODELS
    + OPENAI_MODELS
    + MINIMAX_MODELS
    + REPLICATE_MODELS
    + ELEVENLABS_MODELS
    + GOOGLE_MODELS
    + FAL_MODELS
)


class CatalogError(ValueError):
    """A configured model is malformed; the message says which and why."""


def model_from_config(name: str, entry: Mapping[str, Any]) -> ModelSpec:
    """A model declared in the models file (e.g. another Replicate model)."""
    known = set(ModelSpec.__dataclass_fields__) - {"name"}
    unknown = set(entry) - known
    if unknown:
        raise CatalogError(f"model {name!r}: unknown fields {', '.join(sorted(unknown))}")
    values = dict(entry)
    if values.get("type") not in MEDIA_TYPES:
        raise CatalogError(f"model {name!r}: type must be one of {', '.join(MEDIA_TYPES)}")
    values["type"] = MediaType(values["type"])
    for required in ("provider", "provider_model"):
        if not isinstance(values.get(required), str):
            raise CatalogError(f"model {name!r}: {required} is required")
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    if "price" in values:
        try:
            values["price"] = price_from_config(name, values["price"])
        except PriceError as exc:
            raise CatalogError(str(exc)) from None
    spec = ModelSpec(name=name, **values)
    if spec.type in ("image", "video") and not spec.sizes:
        raise CatalogError(f"model {name!r}: sizes is required for {spec.type} models")
    if spec.type == "video" and not (spec.seconds or spec.max_seconds):
        raise CatalogError(f"model {name!r}: seconds or max_seconds is required")
    if spec.type == "speech" and not spec.formats:
        raise CatalogError(f"model {name!r}: formats is required for speech models")
    return spec


class Catalog:
    """Looks models up by canonical name or built-in alias."""

    def __init__(self, models: Iterable[ModelSpec]) -> None:
        self._models: dict[str, ModelSpec] = {}
        self._names: dict[str, str] = {}
        for model in models:
            self._models[model.name] = model
            self._names[model.name] = model.name
            for alias in model.aliases:
                self._names.setdefault(alias, model.name)

    def get(self, name: str) -> ModelSpec | None:
        canonical = self._names.get(name)
        return None if canonical is None else self._models[canonical]

    def names(self) -> Iterator[str]:
        """Every name that resolves: canonical names and built-in aliases."""
        return iter(self._names)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._models.values())


def build_catalog(
    providers: Iterable[str],
    extra: Iterable[ModelSpec] = (),
    prices: Mapping[str, Price] | None = None,
) -> Catalog:
    """The models whose provider is configured here, priced: the built-in list prices, then
    the operator's `prices` (by canonical name), then a configured model's own `price`."""
    enabled = set(providers)
    table = {**BUILTIN_PRICES, **(prices or {})}
    priced = (
        m if m.price is not None or m.name not in table else replace(m, price=table[m.name])
        for m in (*BUILTIN_MODELS, *extra)
    )
    return Catalog(m for m in priced if m.provider in enabled)


def default_catalog() -> Catalog:
    return build_catalog(["local"])
