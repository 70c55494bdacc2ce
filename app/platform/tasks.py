"""The task contract between the API and the workers: the arq task names, and the JSON wire
format arq stores them in (never pickle: anyone who can write to Redis could run code)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

GENERATE_TASK = "generate_media"
PURGE_KEY_TASK = "purge_key_media"
WEBHOOK_TASK = "deliver_webhook"


class RemoteJobError(Exception):
    """An exception a job raised, as read back from its JSON result."""


_EXC_MARK = "__exception__"


def _default(obj: Any) -> Any:
    # arq stores a failed or aborted job's exception as its result; JSON cannot hold one, so keep
    # its class name and message. `Job.abort()` needs CancelledError to come back as itself.
    if isinstance(obj, BaseException):
        return {_EXC_MARK: type(obj).__name__, "message": str(obj)}
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def serialize(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, default=_default)


def deserialize(raw: bytes) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(raw)
    result = data.get("r")
    if isinstance(result, dict) and _EXC_MARK in result:
        if result[_EXC_MARK] == "CancelledError":
            data["r"] = asyncio.CancelledError()
        else:
            data["r"] = RemoteJobError(f"{result[_EXC_MARK]}: {result.get('message', '')}")
    return data
