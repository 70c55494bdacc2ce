"""Request bodies the OpenAI-compatible endpoints and uploads take: JSON or multipart (files read
with a size limit, under the process's cap on uploads read at once), validated into a schema,
with the request's `Idempotency-Key` claim and its `Webhook-Url`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from litestar import Request
from litestar.datastructures import UploadFile
from pydantic import BaseModel, ValidationError

from app.http.state import api_state
from app.platform import idempotency
from app.platform.errors import InvalidRequestError, QuotaExceededError
from app.platform.idempotency import Claim
from app.platform.vocabulary import ErrorCode

Model = TypeVar("Model", bound=BaseModel)


def prefers_async(request: Request[Any, Any, Any]) -> bool:
    prefer = request.headers.get("prefer", "")
    return any(part.strip().lower() == "respond-async" for part in prefer.split(","))


def preferred_wait(request: Request[Any, Any, Any]) -> float | None:
    """Seconds asked for with `Prefer: wait=N` (RFC 7240), None if not asked (or not a number:
    a preference a server does not understand is ignored)."""
    for part in request.headers.get("prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                return None
            return seconds if seconds >= 0 and seconds == seconds else None
    return None


def is_multipart(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


@dataclass(frozen=True, slots=True)
class Body(Generic[Model]):
    """A request body: its fields, its files (read, size-checked) and its idempotency claim."""

    fields: Model
    files: dict[str, bytes]
    claim: Claim | None
    webhook: dict[str, Any] | None = None
    """From `Webhook-Url` (and `Webhook-Events`, comma-separated): OpenAI's request bodies have
    no place for it."""


@contextlib.asynccontextmanager
async def held(slots: asyncio.Semaphore, what: str) -> AsyncIterator[None]:
    """One of the process's slots for reading `what` (each is held in memory while it is read
    and parsed), or 429 at once when every slot is taken: memory stays bounded by the slots,
    and a client is told to retry rather than left waiting."""
    if slots.locked():
        raise QuotaExceededError(
            f"This server is reading as many {what} as it takes at once. Retry shortly.",
            code=ErrorCode.TOO_MANY_UPLOADS,
            retry_after=5,
        )
    async with slots:
        yield


@contextlib.asynccontextmanager
async def read_held(
    request: Request[Any, Any, Any], slots: asyncio.Semaphore, what: str
) -> AsyncIterator[bytes]:
    """The request's whole body, read and used under one of `slots` (see `held`)."""
    async with held(slots, what):
        yield await request.body()


async def _read_form(
    request: Request[Any, Any, Any], max_file_bytes: int
) -> tuple[dict[str, bytes], dict[str, Any]]:
    files: dict[str, bytes] = {}
    fields: dict[str, Any] = {}
    form = await request.form()
    for name, value in form.multi_items():
        name = name.removesuffix("[]")
        if isinstance(value, UploadFile):
            if name in files:
                raise InvalidRequestError(f"send one file as {name}", param=name)
            data = await value.read(max_file_bytes + 1)
            if len(data) > max_file_bytes:
                raise InvalidRequestError(
                    f"{name} is larger than {max_file_bytes} bytes", param=name
                )
            files[name] = data
        else:
            fields[name] = value
    return files, fields


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(
            "The request body is not valid JSON.", code=ErrorCode.INVALID_JSON
        ) from None


def validated(schema: type[Model], fields: Any, within: str = "") -> Model:
    """`fields` as `schema`, or a 400 naming the first invalid field (under `within`, the
    place of this part of the body: `requests[3]`)."""
    try:
        return schema.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        param = (f"{within}.{where}" if where else within) if within else where or None
        raise InvalidRequestError(
            f"Invalid value for {param!r}: {first['msg']}", param=param
        ) from None


async def read_body(
    request: Request[Any, Any, Any], schema: type[Model], max_file_bytes: int
) -> Body[Model]:
    """Parse a JSON or multipart body into `schema`; uploaded files are returned apart."""
    files: dict[str, bytes] = {}
    fields: dict[str, Any] = {}
    if is_multipart(request):
        async with held(api_state(request).upload_slots, "uploads"):
            files, fields = await _read_form(request, max_file_bytes)
    else:
        raw = parse_json(await request.body())
        if not isinstance(raw, dict):
            raise InvalidRequestError("The request body must be a JSON object.")
        fields = raw
    model = validated(schema, fields)
    header = request.headers.get(idempotency.HEADER)
    claim = idempotency.claim_of(header, request.method, request.url.path, fields, files)
    webhook = None
    if url := request.headers.get("webhook-url"):
        events = request.headers.get("webhook-events")
        webhook = {
            "url": url,
            "events": [e.strip() for e in events.split(",") if e.strip()] if events else None,
        }
    return Body(model, files, claim, webhook)
