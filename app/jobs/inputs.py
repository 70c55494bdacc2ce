"""Validation of a job's input against its model's limits, at the edge, with `param` set."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from app.platform.errors import InvalidRequestError
from providers.registry import ModelSpec

VOICE_NAME = re.compile(r"[\w][\w .'-]{0,99}")
"""A voice by name or id, for providers whose voices are open-ended (ElevenLabs)."""


def _err(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=f"input.{param}")


IMAGE_FIELDS = frozenset(
    {"prompt", "n", "size", "seed", "quality", "style", "aspect_ratio", "image"}
    | {"negative_prompt", "steps"}
)
SPEECH_FIELDS = frozenset({"input", "voice", "format", "speed", "instructions"})
VIDEO_FIELDS = frozenset(
    {"prompt", "seconds", "size", "fps", "seed", "input_reference", "negative_prompt", "steps"}
)


def _allowed(spec: ModelSpec, params: Mapping[str, Any], allowed: frozenset[str]) -> None:
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


def _optional_choice(params: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str | None:
    if params.get(name) is None:
        return None
    if not choices:
        raise _err(f"this model does not take {name}", name)
    return _choice(params, name, choices, choices[0])


def _reference(spec: ModelSpec, params: Mapping[str, Any], name: str) -> dict[str, str] | None:
    """An input file: an upload named by id, `{"media_id": "med_..."}`, or `{"url": "https://..."}`
    that the worker fetches."""
    value = params.get(name)
    if value is None:
        return None
    if not spec.edits:
        raise _err(f"model {spec.name!r} does not take an input {name}", name)
    if isinstance(value, dict) and len(value) == 1:
        (field_name, field_value), *_ = value.items()
        if field_name in ("media_id", "url") and isinstance(field_value, str) and field_value:
            if len(field_value) > 2048:
                raise _err(f"{name}.{field_name} is too long", name)
            return {field_name: field_value}
    raise _err(f'{name} must be {{"media_id": "med_..."}} or {{"url": "https://..."}}', name)


def _drop_none(values: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None or k not in names}


def _sampling(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """A negative prompt and sampling steps, for the models that take them (ComfyUI's)."""
    values: dict[str, Any] = {}
    if params.get("negative_prompt") is not None:
        if not spec.negative_prompt:
            raise _err(f"model {spec.name!r} does not take negative_prompt", "negative_prompt")
        values["negative_prompt"] = _text(params, "negative_prompt", spec.max_prompt_chars)
    if params.get("steps") is not None:
        if not spec.max_steps:
            raise _err(f"model {spec.name!r} does not take steps", "steps")
        values["steps"] = _int(params, "steps", None, 1, spec.max_steps)
    return values


def validate_image(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    _allowed(spec, params, IMAGE_FIELDS)
    values = {
        "prompt": _text(params, "prompt", spec.max_prompt_chars),
        "n": _int(params, "n", 1, 1, spec.max_n),
        "size": _choice(params, "size", spec.sizes, spec.size_default),
        "seed": _int(params, "seed", None, 0, 2**31 - 1),
        "quality": _optional_choice(params, "quality", spec.qualities),
        "style": _optional_choice(params, "style", spec.styles),
        "aspect_ratio": _optional_choice(params, "aspect_ratio", spec.aspect_ratios),
        "image": _reference(spec, params, "image"),
        **_sampling(spec, params),
    }
    return _drop_none(values, "quality", "style", "aspect_ratio", "image")


def validate_video(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    _allowed(spec, params, VIDEO_FIELDS)
    default_fps = spec.fps[1] if len(spec.fps) > 1 else (spec.fps[0] if spec.fps else None)
    fps = params.get("fps", default_fps)
    if spec.fps and fps not in spec.fps:
        raise _err(f"fps must be one of {', '.join(map(str, spec.fps))}; got {fps!r}", "fps")
    if not spec.fps and params.get("fps") is not None:
        raise _err(f"model {spec.name!r} does not take fps", "fps")
    if spec.seconds:
        seconds = params.get("seconds", spec.seconds[0])
        if isinstance(seconds, bool) or seconds not in spec.seconds:
            allowed = ", ".join(map(str, spec.seconds))
            raise _err(f"seconds must be one of {allowed}; got {seconds!r}", "seconds")
    else:
        seconds = _int(
            params, "seconds", min(4, spec.max_seconds), spec.min_seconds, spec.max_seconds
        )
    values = {
        "prompt": _text(params, "prompt", spec.max_prompt_chars),
        "seconds": seconds,
        "size": _choice(params, "size", spec.sizes, spec.default_size or spec.sizes[0]),
        "fps": fps,
        "seed": _int(params, "seed", None, 0, 2**31 - 1),
        "input_reference": _reference(spec, params, "input_reference"),
        **_sampling(spec, params),
    }
    return _drop_none(values, "input_reference", "fps")


def validate_speech(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    _allowed(spec, params, SPEECH_FIELDS)
    voice = params.get("voice", spec.voices[0] if spec.voices else None)
    if spec.open_voices:
        if not isinstance(voice, str) or not VOICE_NAME.fullmatch(voice):
            raise _err(
                "voice must be a voice's name or id (letters, digits, spaces, . _ ' -; "
                f"at most 100 characters); got {voice!r}",
                "voice",
            )
    elif spec.voices and voice not in spec.voices:
        raise _err(f"voice must be one of {', '.join(spec.voices)}; got {voice!r}", "voice")
    speed = params.get("speed")
    if speed is not None:
        if not spec.speed:
            raise _err(f"model {spec.name!r} does not take speed", "speed")
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4:
            raise _err(f"speed must be a number between 0.25 and 4.0, got {speed!r}", "speed")
    instructions = params.get("instructions")
    if instructions is not None:
        if not spec.instructions:
            raise _err(f"model {spec.name!r} does not take instructions", "instructions")
        instructions = _text(params, "instructions", spec.max_input_chars)
    values = {
        "input": _text(params, "input", spec.max_input_chars),
        "voice": voice,
        "format": _choice(params, "format", spec.formats, spec.formats[0]),
        "speed": speed,
        "instructions": instructions,
    }
    return _drop_none(values, "speed", "instructions")


VALIDATORS: dict[str, Callable[[ModelSpec, Mapping[str, Any]], dict[str, Any]]] = {
    "image": validate_image,
    "video": validate_video,
    "speech": validate_speech,
}


def validate_input(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    return VALIDATORS[spec.type](spec, params)


REFERENCE_PARAMS = ("image", "input_reference")


def references(params: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The input files a validated input refers to (`{"media_id"}` or `{"url"}`), by name."""
    return {name: params[name] for name in REFERENCE_PARAMS if isinstance(params.get(name), dict)}
