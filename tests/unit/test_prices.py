"""Prices: every built-in model's cost at several sizes, durations and lengths, against the
providers' published list prices (written out here by hand, not read from the table), and the
models file's prices replacing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.jobs.inputs import validate_input
from app.platform.models_file import load_models_file
from app.platform.settings import SettingsError
from providers.prices import BUILTIN_PRICES, dollars, job_cost
from providers.registry import BUILTIN_MODELS, build_catalog

CATALOG = build_catalog(["local", "openai", "minimax", "replicate"])

CASES: list[tuple[str, dict[str, Any], float]] = [
    # Images: per image, by quality and size, times n.
    ("dall-e-2", {"prompt": "p", "size": "256x256"}, 0.016),
    ("dall-e-2", {"prompt": "p", "size": "512x512", "n": 3}, 0.054),
    ("dall-e-2", {"prompt": "p", "size": "1024x1024", "n": 10}, 0.20),
    ("dall-e-3", {"prompt": "p"}, 0.04),  # standard 1024x1024 by default
    ("dall-e-3", {"prompt": "p", "size": "1792x1024"}, 0.08),
    ("dall-e-3", {"prompt": "p", "size": "1024x1024", "quality": "hd"}, 0.08),
    ("dall-e-3", {"prompt": "p", "size": "1024x1792", "quality": "hd"}, 0.12),
    ("gpt-image-1", {"prompt": "p", "quality": "low"}, 0.011),
    ("gpt-image-1", {"prompt": "p", "quality": "medium", "size": "1536x1024", "n": 2}, 0.126),
    ("gpt-image-1", {"prompt": "p", "quality": "high", "size": "1024x1536"}, 0.25),
    ("gpt-image-1", {"prompt": "p"}, 0.167),  # auto: charged as high, never under-counted
    ("minimax/image-01", {"prompt": "p", "n": 9}, 0.0315),
    ("replicate/black-forest-labs/flux-schnell", {"prompt": "p", "n": 4}, 0.012),
    ("local-image", {"prompt": "p", "n": 4, "size": "1024x1024"}, 0.0),
    # Video: per second by resolution, or per clip where the provider prices clips.
    ("sora-2", {"prompt": "p", "seconds": 4}, 0.40),
    ("sora-2", {"prompt": "p", "seconds": 12, "size": "1280x720"}, 1.20),
    ("sora-2-pro", {"prompt": "p", "seconds": 8}, 2.40),
    ("sora-2-pro", {"prompt": "p", "seconds": 12, "size": "1792x1024"}, 6.00),
    ("minimax/MiniMax-Hailuo-02", {"prompt": "p", "seconds": 6}, 0.28),
    ("minimax/MiniMax-Hailuo-02", {"prompt": "p", "seconds": 10}, 0.56),
    ("minimax/MiniMax-Hailuo-02", {"prompt": "p", "seconds": 6, "size": "1920x1080"}, 0.49),
    ("replicate/minimax/video-01", {"prompt": "p"}, 0.50),
    ("local-video", {"prompt": "p", "seconds": 12}, 0.0),
    # Speech: per 1,000 characters of input.
    ("tts-1", {"input": "x" * 1000, "voice": "alloy"}, 0.015),
    ("tts-1", {"input": "x" * 2500, "voice": "alloy"}, 0.0375),
    ("tts-1-hd", {"input": "x" * 4000, "voice": "alloy"}, 0.12),
    ("gpt-4o-mini-tts", {"input": "x" * 100, "voice": "alloy"}, 0.0015),
    ("replicate/minimax/speech-02-turbo", {"input": "x" * 500, "voice": "Wise_Woman"}, 0.03),
    ("local-speech", {"input": "hello", "voice": "alloy"}, 0.0),
]


@pytest.mark.parametrize(("model", "params", "expected"), CASES)
def test_a_jobs_cost_is_its_list_price(model: str, params: dict[str, Any], expected: float) -> None:
    spec = CATALOG.get(model)
    assert spec is not None and spec.price is not None
    assert dollars(job_cost(spec.price, spec.type, validate_input(spec, params))) == expected


def test_every_builtin_model_has_a_dated_price() -> None:
    assert {m.name for m in BUILTIN_MODELS} == set(BUILTIN_PRICES)
    for price in BUILTIN_PRICES.values():
        assert len(price.checked) == 10 and price.source


def test_the_models_file_replaces_a_price(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "prices:\n"
        "  openai/dall-e-3:\n"
        "    unit: image\n"
        "    checked: 2026-12-01\n"
        "    default_quality: standard\n"
        "    rates: {standard/1024x1024: 0.05, hd/1024x1024: 0.1}\n"
        "  local-image: {unit: image, checked: 2026-12-01, rates: {'*': 0.002}}\n"
    )
    loaded = load_models_file(str(path))
    catalog = build_catalog(["local", "openai"], loaded.models, loaded.prices)
    dalle, local = catalog.get("dall-e-3"), catalog.get("local-image")
    assert dalle is not None and dalle.price is not None
    assert local is not None and local.price is not None
    assert dollars(job_cost(dalle.price, "image", {"size": "1024x1024"})) == 0.05
    assert dollars(job_cost(local.price, "image", {"size": "64x64", "n": 3})) == 0.006


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("prices:\n  no/such-model: {unit: image, checked: x, rates: {'*': 1}}\n", "unknown"),
        ("prices:\n  local-image: {unit: frame, checked: x, rates: {'*': 1}}\n", "unit"),
        ("prices:\n  local-image: {unit: image, checked: x, rates: {'*': -1}}\n", "0 or more"),
        ("prices:\n  local-image: {unit: image, rates: {'*': 1}}\n", "checked"),
    ],
)
def test_a_malformed_price_is_refused_at_start(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=words):
        load_models_file(str(path))
