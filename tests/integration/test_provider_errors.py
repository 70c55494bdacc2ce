"""Each provider's error mapping, called directly against its emulator: bad upstream credentials,
rejected parameters and overload become the typed ProviderError the worker acts on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from providers.base import (
    ContentPolicyError,
    GenerationRequest,
    ProviderAuthError,
    ProviderError,
    ProviderInvalidRequestError,
    ProviderRetryableError,
)
from providers.minimax import MiniMaxProvider
from providers.openai import OpenAIProvider
from providers.replicate import ReplicateProvider
from providers.upstream import UpstreamConfig, parse_retry_after
from tests.emulators.base import API_KEY


class Hooks:
    def __init__(self) -> None:
        self.progress_seen: list[int] = []
        self.tasks: list[str | None] = []

    async def progress(self, percent: int) -> None:
        self.progress_seen.append(percent)

    async def task_started(self, task_id: str | None) -> None:
        self.tasks.append(task_id)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def _provider(name: str, http: httpx.AsyncClient, emu: dict[str, Any], key: str = API_KEY) -> Any:
    url = emu[name].url + ("" if name == "minimax" else "/v1")
    config = UpstreamConfig(key, url, poll_initial_seconds=0.01, poll_max_seconds=0.05)
    cls = {"openai": OpenAIProvider, "minimax": MiniMaxProvider, "replicate": ReplicateProvider}
    return cls[name](http, config)


def _image(model: str, **params: Any) -> GenerationRequest:
    return GenerationRequest("job_x", "image", model, {"prompt": "x", "n": 1, **params})


async def _drain(provider: Any, request: GenerationRequest, hooks: Hooks | None = None) -> int:
    count = 0
    async for media in provider.generate(request, hooks or Hooks()):
        async for _ in media.chunks:
            pass
        count += 1
    return count


@pytest.mark.parametrize(
    ("name", "model", "params"),
    [
        ("openai", "dall-e-2", {"size": "256x256"}),
        ("minimax", "image-01", {"size": "1024x1024"}),
        ("replicate", "black-forest-labs/flux-schnell", {"size": "1024x1024"}),
    ],
)
async def test_bad_upstream_credentials(
    http: httpx.AsyncClient, emu: dict[str, Any], name: str, model: str, params: dict[str, Any]
) -> None:
    provider = _provider(name, http, emu, key="wrong")
    with pytest.raises(ProviderAuthError) as denied:
        await _drain(provider, _image(model, **params))
    assert denied.value.code == "provider_auth_failed" and not denied.value.retryable


async def test_invalid_parameters_are_not_retryable(
    http: httpx.AsyncClient, emu: dict[str, Any]
) -> None:
    with pytest.raises(ProviderInvalidRequestError):
        await _drain(_provider("openai", http, emu), _image("dall-e-3", size="256x256"))
    with pytest.raises(ProviderInvalidRequestError) as minimax:
        await _drain(_provider("minimax", http, emu), _image("image-01", size="1024x1024", n=0))
    assert "2013" in minimax.value.message
    with pytest.raises(ProviderInvalidRequestError):
        await _drain(_provider("replicate", http, emu), _image("nobody/nothing", size="512x512"))


async def test_overload_and_rejection_kinds(http: httpx.AsyncClient, emu: dict[str, Any]) -> None:
    emu["replicate"].fail("/v1/models/", 429, {"detail": "throttled"}, headers={"retry-after": "7"})
    with pytest.raises(ProviderRetryableError) as throttled:
        await _drain(
            _provider("replicate", http, emu),
            _image("black-forest-labs/flux-schnell", size="1024x1024"),
        )
    assert throttled.value.retry_after == 7.0
    with pytest.raises(ContentPolicyError):
        await _drain(
            _provider("openai", http, emu), _image("dall-e-2", prompt="forbidden", size="256x256")
        )


async def test_a_saved_task_is_resumed_not_recreated(
    http: httpx.AsyncClient, emu: dict[str, Any]
) -> None:
    provider = _provider("minimax", http, emu)
    video = GenerationRequest(
        "job_y", "video", "MiniMax-Hailuo-02", {"prompt": "x", "seconds": 6, "size": "1366x768"}
    )
    emu["minimax"].fail("/v1/query/video_generation", 502, {})
    hooks = Hooks()
    with pytest.raises(ProviderError):
        await _drain(provider, video, hooks)
    assert len(hooks.tasks) == 1 and hooks.tasks[0] is not None
    resumed = GenerationRequest(**{**_fields(video), "task_id": hooks.tasks[0]})
    assert await _drain(provider, resumed, Hooks()) == 1
    assert len(emu["minimax"].created) == 1


def _fields(request: GenerationRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in request.__dataclass_fields__}


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT")
    assert later is not None and later > 0
