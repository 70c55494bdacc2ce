"""Request-scoped dependencies: the shared resources, a database session, the caller's key."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.errors import AuthenticationError
from app.core.events import EventHub
from app.core.keys import KeyCache, authenticate, token_digest
from app.core.limits import admit_request
from app.core.models import VirtualKey
from app.core.resources import Resources


def bearer_token(headers: Any) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def provide_resources(state: State) -> Resources:
    resources: Resources = state.resources
    return resources


async def provide_hub(state: State) -> EventHub:
    hub: EventHub = state.hub
    return hub


async def provide_session(resources: Resources) -> AsyncIterator[AsyncSession]:
    async with resources.sessionmaker() as session:
        yield session


async def lookup_key(
    resources: Resources, token: str | None, cache: KeyCache | None = None
) -> VirtualKey | None:
    """The active key `token` names: from the process's cache, else from its row (a session of
    its own, closed at once: long streams must not hold a pooled connection)."""
    if token is None:
        return None
    digest = token_digest(token)
    if digest is None:
        return None
    if cache is not None:
        key = cache.get(digest)
        if key is not None:
            return key
        generation = cache.generation
    async with resources.sessionmaker() as session:
        key = await authenticate(session, token)
    if key is not None and cache is not None:
        cache.put(digest, key, generation)
    return key


async def provide_key(request: Request[Any, Any, Any], resources: Resources) -> VirtualKey:
    token = bearer_token(request.headers)
    if token is None:
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer mg_...'.",
            code="missing_api_key",
        )
    key = await lookup_key(resources, token, request.app.state.key_cache)
    if key is None:
        raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
    per_minute = key.requests_per_minute or resources.settings.requests_per_minute
    if per_minute is not None:
        await admit_request(resources.redis, resources.settings.redis_namespace, key.id, per_minute)
    return key


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    resources: Resources = connection.app.state.resources
    expected = resources.settings.admin_key or ""
    token = bearer_token(connection.headers) or ""
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise AuthenticationError("This endpoint needs the admin key.", code="invalid_admin_key")


DEPENDENCIES = {
    "resources": Provide(provide_resources),
    "hub": Provide(provide_hub),
    "session": Provide(provide_session),
}
KEY_DEPENDENCY = {"key": Provide(provide_key)}
