"""The job contract between the API and the workers: task names, queue and key names, and the
JSON wire format arq uses (never pickle: anyone who can write to Redis could run code)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

GENERATE_TASK = "generate_media"
PURGE_KEY_TASK = "purge_key_media"
WEBHOOK_TASK = "deliver_webhook"


def purge_job_id(key_id: str) -> str:
    """One purge per key at a time: arq does not enqueue a job id that is queued or running."""
    return f"purge-{key_id}"


def queue_name(namespace: str) -> str:
    return f"{namespace}:queue"


def events_stream_key(namespace: str, job_id: str) -> str:
    return f"{namespace}:events:{job_id}"


def events_meta_key(namespace: str, job_id: str) -> str:
    return f"{namespace}:events-meta:{job_id}"


def events_channel(namespace: str) -> str:
    return f"{namespace}:events"


def keys_channel(namespace: str) -> str:
    """Where a change to a virtual key (revoked, deleted, limits changed) is announced, so that
    every API process drops its cached copy."""
    return f"{namespace}:keys"


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
