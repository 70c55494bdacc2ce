"""What a generation costs: each model's list price (per image by quality and size, per second of
video by resolution, per 1,000 characters of speech), the date it was checked, and the cost of a
job's input under it.

Money is counted in integer micro-dollars (1 USD = 1,000,000): sums and budgets stay exact, and
a database adds them without rounding. Prices are the providers' published list prices; an
operator overrides any of them (and prices their own models) in the models file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from providers.base import MediaType

MICROS = 1_000_000
"""Micro-dollars in a dollar."""

UNITS = ("image", "second", "1k_chars")
"""What a price is per: an image, a second of video, 1,000 characters of speech input."""


class PriceError(ValueError):
    """A configured price is malformed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price in USD per `unit`. `rates` are looked up from the most to the least
    specific tier: for images `quality/size`, `size`, `quality/*`, `*`; for video
    `size/<seconds>s` and `*/<seconds>s` (the price of the whole clip of that length, as
    providers that price by clip list it), then `size` and `*` (per second); for speech `*`."""

    unit: str
    rates: Mapping[str, Decimal]
    checked: str
    """The day the rates were taken from the provider's price page (YYYY-MM-DD)."""
    source: str = ""
    default_quality: str | None = None
    """The quality a request without one is charged at (the provider's default)."""
    notes: str = ""

    def rate(self, *tiers: str) -> Decimal | None:
        for tier in tiers:
            if tier in self.rates:
                return self.rates[tier]
        return None


def micros(dollars: Decimal) -> int:
    """Dollars to micro-dollars, rounded up: a cost is never under-counted."""
    return math.ceil(dollars * MICROS)


def dollars(amount: int | None) -> float | None:
    """Micro-dollars as the number every response shows (USD, six decimals at most)."""
    return None if amount is None else round(amount / MICROS, 6)


def unit_cost(price: Price, media_type: MediaType | str, values: Mapping[str, Any]) -> int | None:
    """The cost of one output for a validated input: an image (times `n` for the job), or the
    whole video or speech. None: the price has no rate for this input."""
    if media_type == "image":
        size = str(values.get("size") or "*")
        quality = str(values.get("quality") or price.default_quality or "*")
        rate = price.rate(f"{quality}/{size}", size, f"{quality}/*", "*")
        return None if rate is None else micros(rate)
    if media_type == "video":
        size = str(values.get("size") or "*")
        seconds = int(values.get("seconds") or 0)
        clip = price.rate(f"{size}/{seconds}s", f"*/{seconds}s")
        if clip is not None:
            return micros(clip)
        rate = price.rate(size, "*")
        return None if rate is None else micros(rate * seconds)
    text = str(values.get("input") or "")
    rate = price.rate("*")
    return None if rate is None else micros(rate * len(text) / 1000)


def job_cost(
    price: Price | None, media_type: MediaType | str, values: Mapping[str, Any]
) -> int | None:
    """What a job with this validated input costs if every output is made: the estimate."""
    if price is None:
        return None
    one = unit_cost(price, media_type, values)
    if one is None:
        return None
    return one * int(values.get("n") or 1) if media_type == "image" else one


def _decimal(value: object, where: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PriceError(f"{where}: {value!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise PriceError(f"{where}: a price is a number of dollars, 0 or more")
    return amount


def price_from_config(model: str, entry: Mapping[str, Any]) -> Price:
    """A price as the models file writes it:
    `{unit: image, checked: 2026-12-01, rates: {"hd/1024x1024": 0.08, "*": 0.04}}`."""
    where = f"price of {model!r}"
    if not isinstance(entry, Mapping):
        raise PriceError(f"{where}: expected unit, rates and checked")
    known = {"unit", "rates", "checked", "source", "default_quality", "notes"}
    unknown = set(entry) - known
    if unknown:
        raise PriceError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    unit = entry.get("unit")
    if unit not in UNITS:
        raise PriceError(f"{where}: unit must be one of {', '.join(UNITS)}")
    rates = entry.get("rates")
    if not isinstance(rates, Mapping) or not rates:
        raise PriceError(f"{where}: rates must map tiers (e.g. '1024x1024' or '*') to dollars")
    checked = entry.get("checked")
    if checked is None:
        raise PriceError(f"{where}: checked (the day the price was taken) is required")
    return Price(
        unit=str(unit),
        rates={str(k): _decimal(v, f"{where}, rate {k!r}") for k, v in rates.items()},
        checked=str(checked),
        source=str(entry.get("source") or ""),
        default_quality=entry.get("default_quality"),
        notes=str(entry.get("notes") or ""),
    )


def _rates(unit: str, checked: str, source: str, rates: Mapping[str, str], **kw: Any) -> Price:
    return Price(unit, {k: Decimal(v) for k, v in rates.items()}, checked, source, **kw)


OPENAI_PRICES = "https://openai.com/api/pricing/"
OPENAI_CHECKED = "2025-10-06"
MINIMAX_PRICES = "https://www.minimax.io/price"
MINIMAX_CHECKED = "2025-09-01"
REPLICATE_CHECKED = "2025-09-01"
ELEVENLABS_PRICES = "https://elevenlabs.io/pricing/api"
ELEVENLABS_CHECKED = "2026-06-01"
GOOGLE_PRICES = "https://ai.google.dev/gemini-api/docs/pricing"
GOOGLE_CHECKED = "2025-09-26"
FAL_CHECKED = "2025-10-11"

BUILTIN_PRICES: Mapping[str, Price] = {
    # Runs on this machine: nothing to pay a provider.
    **{
        name: _rates(unit, "2026-12-03", "mediagate (runs locally)", {"*": "0"})
        for name, unit in (
            ("local-image", "image"),
            ("local-video", "second"),
            ("local-speech", "1k_chars"),
        )
    },
    "openai/dall-e-2": _rates(
        "image",
        OPENAI_CHECKED,
        OPENAI_PRICES,
        {"256x256": "0.016", "512x512": "0.018", "1024x1024": "0.020"},
    ),
    "openai/dall-e-3": _rates(
        "image",
        OPENAI_CHECKED,
        OPENAI_PRICES,
        {
            "standard/1024x1024": "0.040",
            "standard/1792x1024": "0.080",
            "standard/1024x1792": "0.080",
            "hd/1024x1024": "0.080",
            "hd/1792x1024": "0.120",
            "hd/1024x1792": "0.120",
        },
        default_quality="standard",
    ),
    "openai/gpt-image-1": _rates(
        "image",
        OPENAI_CHECKED,
        OPENAI_PRICES,
        {
            "low/1024x1024": "0.011",
            "low/1024x1536": "0.016",
            "low/1536x1024": "0.016",
            "medium/1024x1024": "0.042",
            "medium/1024x1536": "0.063",
            "medium/1536x1024": "0.063",
            "high/1024x1024": "0.167",
            "high/1024x1536": "0.25",
            "high/1536x1024": "0.25",
            # OpenAI bills gpt-image-1 by tokens; these are its per-image figures. `auto` lets
            # OpenAI choose, so it is charged as `high`: an estimate never under-counts.
            "auto/1024x1024": "0.167",
            "auto/1024x1536": "0.25",
            "auto/1536x1024": "0.25",
        },
        default_quality="auto",
    ),
    "openai/sora-2": _rates("second", OPENAI_CHECKED, OPENAI_PRICES, {"*": "0.10"}),
    "openai/sora-2-pro": _rates(
        "second",
        OPENAI_CHECKED,
        OPENAI_PRICES,
        {"720x1280": "0.30", "1280x720": "0.30", "1024x1792": "0.50", "1792x1024": "0.50"},
    ),
    "openai/tts-1": _rates("1k_chars", OPENAI_CHECKED, OPENAI_PRICES, {"*": "0.015"}),
    "openai/tts-1-hd": _rates("1k_chars", OPENAI_CHECKED, OPENAI_PRICES, {"*": "0.030"}),
    # Billed by tokens; OpenAI's own estimate is $0.015 a minute, about 1,000 characters.
    "openai/gpt-4o-mini-tts": _rates("1k_chars", OPENAI_CHECKED, OPENAI_PRICES, {"*": "0.015"}),
    "minimax/image-01": _rates("image", MINIMAX_CHECKED, MINIMAX_PRICES, {"*": "0.0035"}),
    # MiniMax prices a clip by resolution and length: 768P 6 s $0.28, 10 s $0.56; 1080P 6 s $0.49.
    "minimax/MiniMax-Hailuo-02": _rates(
        "second",
        MINIMAX_CHECKED,
        MINIMAX_PRICES,
        {"1366x768/6s": "0.28", "1366x768/10s": "0.56", "1920x1080/6s": "0.49"},
    ),
    "replicate/black-forest-labs/flux-schnell": _rates(
        "image",
        REPLICATE_CHECKED,
        "https://replicate.com/black-forest-labs/flux-schnell",
        {"*": "0.003"},
    ),
    "replicate/minimax/video-01": _rates(
        "second", REPLICATE_CHECKED, "https://replicate.com/minimax/video-01", {"*/6s": "0.50"}
    ),
    "replicate/minimax/speech-02-turbo": _rates(
        "1k_chars",
        REPLICATE_CHECKED,
        "https://replicate.com/minimax/speech-02-turbo",
        {"*": "0.06"},
    ),
    **{
        f"elevenlabs/{model}": _rates(
            "1k_chars",
            ELEVENLABS_CHECKED,
            ELEVENLABS_PRICES,
            {"*": rate},
            notes="ElevenLabs' API list price per 1,000 characters (Multilingual v2/v3 $0.10, "
            "Flash/Turbo $0.05); plans bundle credits, the per-character rate is the same.",
        )
        for model, rate in (
            ("eleven_multilingual_v2", "0.10"),
            ("eleven_v3", "0.10"),
            ("eleven_flash_v2_5", "0.05"),
            ("eleven_turbo_v2_5", "0.05"),
        )
    },
    **{
        f"google/{model}": _rates("image", GOOGLE_CHECKED, GOOGLE_PRICES, {"*": rate})
        for model, rate in (
            ("imagen-4.0-generate-001", "0.04"),
            ("imagen-4.0-fast-generate-001", "0.02"),
            ("imagen-4.0-ultra-generate-001", "0.06"),
        )
    },
    # Veo is priced per second of video made; a filtered video is not charged.
    **{
        f"google/{model}": _rates("second", GOOGLE_CHECKED, GOOGLE_PRICES, {"*": rate})
        for model, rate in (
            ("veo-3.0-generate-001", "0.40"),
            ("veo-3.0-fast-generate-001", "0.15"),
            ("veo-2.0-generate-001", "0.35"),
        )
    },
    # fal bills FLUX per megapixel; our FLUX sizes are about one megapixel each.
    **{
        f"fal/{model}": _rates(
            "image",
            FAL_CHECKED,
            f"https://fal.ai/models/{model}",
            {"*": rate},
            notes="fal's price per megapixel (FLUX [schnell] $0.003, [dev] $0.025, "
            "FLUX1.1 [pro] $0.04): about one megapixel at our sizes.",
        )
        for model, rate in (
            ("fal-ai/flux/schnell", "0.003"),
            ("fal-ai/flux/dev", "0.025"),
            ("fal-ai/flux-pro/v1.1", "0.04"),
        )
    },
    "fal/fal-ai/kling-video/v2.1/master/text-to-video": _rates(
        "second",
        FAL_CHECKED,
        "https://fal.ai/models/fal-ai/kling-video/v2.1/master/text-to-video",
        {"*": "0.28"},
    ),
    "fal/fal-ai/kokoro/american-english": _rates(
        "1k_chars",
        FAL_CHECKED,
        "https://fal.ai/models/fal-ai/kokoro/american-english",
        {"*": "0.02"},
    ),
}
"""The built-in models' list prices in USD, each with the day it was checked. Prices change:
the models file's `prices` section overrides any of them."""
