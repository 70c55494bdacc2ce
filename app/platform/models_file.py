"""The operator's models file (`MEDIAGATE_MODELS_FILE`, YAML): extra catalog models, and aliases
to seed into the database at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from app.platform.settings import SettingsError
from providers.comfyui_workflows import ComfyConfig, comfyui_from_config
from providers.prices import Price, PriceError, price_from_config
from providers.registry import BUILTIN_MODELS, CatalogError, ModelSpec, model_from_config


@dataclass(frozen=True, slots=True)
class ModelsFile:
    """What the operator's models file declares: extra models, aliases to seed, prices that
    replace the built-in ones (by canonical model name), and a pool of ComfyUI servers with the
    workflows they run (each a `comfyui/<workflow>` model, among `models`)."""

    models: tuple[ModelSpec, ...] = ()
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    prices: Mapping[str, Price] = field(default_factory=dict)
    comfyui: ComfyConfig | None = None


def load_models_file(path: str | None) -> ModelsFile:
    if not path:
        return ModelsFile()
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"MEDIAGATE_MODELS_FILE {path!r} cannot be read: {exc}") from exc
    raw = raw or {}
    if not isinstance(raw, dict) or set(raw) - {"models", "aliases", "prices", "comfyui"}:
        raise SettingsError(
            f"MEDIAGATE_MODELS_FILE {path!r}: expected keys models, aliases, prices and comfyui"
        )
    comfyui = None
    try:
        models = tuple(
            model_from_config(str(name), entry) for name, entry in (raw.get("models") or {}).items()
        )
        if raw.get("comfyui") is not None:
            comfyui = comfyui_from_config(raw["comfyui"], Path(path).parent)
            models += comfyui.models
    except (CatalogError, TypeError) as exc:
        raise SettingsError(f"MEDIAGATE_MODELS_FILE {path!r}: {exc}") from exc
    aliases: dict[str, tuple[str, ...]] = {}
    for name, targets in (raw.get("aliases") or {}).items():
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise SettingsError(
                f"MEDIAGATE_MODELS_FILE {path!r}: alias {name!r} must list model names"
            )
        aliases[str(name)] = tuple(targets)
    try:
        prices = {
            str(name): price_from_config(str(name), entry)
            for name, entry in (raw.get("prices") or {}).items()
        }
    except PriceError as exc:
        raise SettingsError(f"MEDIAGATE_MODELS_FILE {path!r}: {exc}") from exc
    known = {m.name for m in (*BUILTIN_MODELS, *models)}
    unknown = sorted(set(prices) - known)
    if unknown:
        raise SettingsError(
            f"MEDIAGATE_MODELS_FILE {path!r}: prices for unknown models {', '.join(unknown)} "
            "(use canonical names, e.g. openai/dall-e-3)"
        )
    return ModelsFile(models, aliases, prices, comfyui)
