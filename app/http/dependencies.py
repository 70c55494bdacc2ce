"""Request-scoped dependencies: the shared resources, the event hub, the caller's address and rate
window, the admin guard. (The caller's key is the keys domain's: `app.keys.dependencies`.)
Handlers get no database session: each service owns its unit of work."""

from __future__ import annotations

import hmac
from typing import Any, cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Scope

from app.http.state import api_state
from app.platform.errors import AuthenticationError
from app.platform.events import EventHub
from app.platform.limits import (
    Hold,
    RateWindow,
    SignIn,
    admit_request,
    attempt,
    refuse,
)
from app.platform.resources import Resources
from app.platform.tables import VirtualKey
from app.platform.vocabulary import ErrorCode


def bearer_token(headers: Any) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def provide_resources(state: State) -> Resources:
    return api_state(state).resources


def event_hub(request: Request[Any, Any, Any]) -> EventHub:
    """The process's event hub. Not a dependency: Litestar resolves sibling dependencies (this
    and `resources`) concurrently in an anyio task group, and that group cost a submit a third
    of its CPU (docs/performance.md, "Measured decisions")."""
    return api_state(request).hub


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client's address: the peer's, or, from a proxy MEDIAGATE_FORWARDED_ALLOW_IPS trusts,
    the one its X-Forwarded-For names (the app's proxy-headers middleware has set it)."""
    return connection.client.host if connection.client else "unknown"


_WINDOW = "mediagate.rate_window"
"""Where the request's key stood in its rate limit, kept in the ASGI scope for the answer."""


def window_of(scope: Scope) -> RateWindow | None:
    """The key's rate-limit window as this request left it (None: not counted)."""
    window: RateWindow | None = cast(dict[str, Any], scope).get(_WINDOW)
    return window


async def admit(scope: Scope, resources: Resources, key: VirtualKey) -> None:
    """Count the request against the key's requests-per-minute limit (429 past it); the answer,
    refused or not, says where the key stands (`x-ratelimit-*-requests`)."""
    per_minute = key.requests_per_minute or resources.settings.requests_per_minute
    if per_minute is not None:
        ns = resources.settings.redis_namespace
        window = await admit_request(resources.redis, ns, key.id, per_minute)
        cast(dict[str, Any], scope)[_WINDOW] = window
        refuse(window)


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The admin key, guessed at no faster than a tenant key: every attempt of an address is
    counted before the bearer is compared (one atomic step), and past
    MEDIAGATE_AUTH_FAILURES_PER_MINUTE failed ones this minute the address gets 429, its
    bearer not even compared. Counted apart from tenants' failures and dashboard sign-ins."""
    resources = api_state(connection).resources
    settings = resources.settings
    counted = await attempt(
        resources.redis,
        settings.redis_namespace,
        SignIn.ADMIN,
        client_address(connection),
        settings.auth_failures_per_minute,
    )
    expected = settings.admin_key or ""
    token = bearer_token(connection.headers) or ""
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise AuthenticationError(
            "This endpoint needs the admin key.", code=ErrorCode.INVALID_ADMIN_KEY
        )
    if counted is not None:
        await counted.succeeded()


DEPENDENCIES = {
    "resources": Provide(provide_resources),
}


def waiting(request: Request[Any, Any, Any], key: VirtualKey) -> Hold:
    """The key's hold on one request waiting for its job (429 past MEDIAGATE_MAX_WAITS_PER_KEY);
    release it (`with`) once the wait is over."""
    return api_state(request).waits.take(key.id)
