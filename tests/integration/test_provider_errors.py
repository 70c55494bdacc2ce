"""Each provider's error mapping, called directly against its emulator: bad upstream credentials,
rejected parameters and overload become the typed ProviderError the worker acts on."""

from __future__ import annotations

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
from tests.provider_calls import Hooks, drain, resumed


def _provider(name: str, http: httpx.AsyncClient, emu: dict[str, Any], key: str = API_KEY) -> Any:
    url = emu[name].url + ("" if name == "minimax" else "/v1")
    config = UpstreamConfig(key, url, poll_initial_seconds=0.01, poll_max_seconds=0.05)
    cls = {"openai": OpenAIProvider, "minimax": MiniMaxProvider, "replicate": ReplicateProvider}
    return cls[name](http, config)


def _image(model: str, **params: Any) -> GenerationRequest:
    return GenerationRequest("job_x", "image", model, {"prompt": "x", "n": 1, **params})


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
        await drain(provider, _image(model, **params))
    assert denied.value.code == "provider_auth_failed" and not denied.value.retryable


async def test_invalid_parameters_are_not_retryable(
    http: httpx.AsyncClient, emu: dict[str, Any]
) -> None:
    with pytest.raises(ProviderInvalidRequestError):
        await drain(_provider("openai", http, emu), _image("dall-e-3", size="256x256"))
    with pytest.raises(ProviderInvalidRequestError) as minimax:
        await drain(_provider("minimax", http, emu), _image("image-01", size="1024x1024", n=0))
    assert "2013" in minimax.value.message
    with pytest.raises(ProviderInvalidRequestError):
        await drain(_provider("replicate", http, emu), _image("nobody/nothing", size="512x512"))


async def test_overload_and_rejection_kinds(http: httpx.AsyncClient, emu: dict[str, Any]) -> None:
    emu["replicate"].fail("/v1/models/", 429, {"detail": "throttled"}, headers={"retry-after": "7"})
    with pytest.raises(ProviderRetryableError) as throttled:
        await drain(
            _provider("replicate", http, emu),
            _image("black-forest-labs/flux-schnell", size="1024x1024"),
        )
    assert throttled.value.retry_after == 7.0
    with pytest.raises(ContentPolicyError):
        await drain(
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
        await drain(provider, video, hooks)
    assert len(hooks.tasks) == 1 and hooks.tasks[0] is not None
    assert await drain(provider, resumed(video, hooks.tasks[0]), Hooks()) == 1
    assert len(emu["minimax"].created) == 1


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT")
    assert later is not None and later > 0
