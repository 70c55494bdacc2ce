"""Validation of a job's input against its model's limits, at the edge, with `param` set."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.core.errors import InvalidRequestError
from providers.registry import ModelSpec


def _err(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=f"input.{param}")


def _allowed(spec: ModelSpec, params: Mapping[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise _err(f"unknown field {name!r} for a {spec.type} job", name)


def _text(params: Mapping[str, Any], name: str, limit: int) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _err(f"{name} is required and must be a non-empty string", name)
    if len(value) > limit:
        raise _err(f"{name} is longer than {limit} characters", name)
    return value


def _int(params: Mapping[str, Any], name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(f"{name} must be an integer", name)
    if not lo <= value <= hi:
        raise _err(f"{name} must be between {lo} and {hi}, got {value}", name)
    return value


def _choice(params: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str) -> str:
    value = params.get(name, default)
    if value not in choices:
        raise _err(f"{name} must be one of {', '.join(choices)}; got {value!r}", name)
    return str(value)


def validate_image(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    _allowed(spec, params, {"prompt", "n", "size", "seed"})
    return {
        "prompt": _text(params, "prompt", spec.max_prompt_chars),
        "n": _int(params, "n", 1, 1, spec.max_n),
        "size": _choice(params, "size", spec.sizes, spec.sizes[min(2, len(spec.sizes) - 1)]),
        "seed": _int(params, "seed", None, 0, 2**31 - 1),
    }


def validate_video(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    _allowed(spec, params, {"prompt", "seconds", "size", "fps", "seed"})
    default_fps = spec.fps[1] if len(spec.fps) > 1 else (spec.fps[0] if spec.fps else None)
    fps = params.get("fps", default_fps)
    if spec.fps and fps not in spec.fps:
        raise _err(f"fps must be one of {', '.join(map(str, spec.fps))}; got {fps!r}", "fps")
    return {
        "prompt": _text(params, "prompt", spec.max_prompt_chars),
        "seconds": _int(params, "seconds", 4, spec.min_seconds, spec.max_seconds),
        "size": _choice(params, "size", spec.sizes, spec.sizes[min(1, len(spec.sizes) - 1)]),
        "fps": fps,
        "seed": _int(params, "seed", None, 0, 2**31 - 1),
    }


def validate_speech(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    _allowed(spec, params, {"input", "voice", "format"})
    voice = params.get("voice", spec.voices[0] if spec.voices else None)
    if spec.voices and voice not in spec.voices:
        raise _err(f"voice must be one of {', '.join(spec.voices)}; got {voice!r}", "voice")
    return {
        "input": _text(params, "input", spec.max_input_chars),
        "voice": voice,
        "format": _choice(params, "format", spec.formats, spec.formats[0]),
    }


VALIDATORS: dict[str, Callable[[ModelSpec, Mapping[str, Any]], dict[str, Any]]] = {
    "image": validate_image,
    "video": validate_video,
    "speech": validate_speech,
}


def validate_input(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    return VALIDATORS[spec.type](spec, params)
