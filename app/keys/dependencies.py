"""The caller's key, as a request dependency: the bearer token authenticated through the process's
key cache, failed sign-ins counted per address, and the key's rate limit applied."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from app.http.dependencies import admit, bearer_token, client_address
from app.http.state import api_state
from app.keys.service import authenticate, token_digest
from app.platform.errors import AuthenticationError
from app.platform.limits import SignIn, attempt
from app.platform.resources import Resources
from app.platform.tables import VirtualKey
from app.platform.vocabulary import ErrorCode


async def caller_key(request: Request[Any, Any, Any], resources: Resources) -> VirtualKey | None:
    """The active key the request's bearer token names, or None. A key that authenticated lately
    comes from the process's cache; anything else costs a database read. An unknown token (not
    a key's, as far as this process knows) is counted as an attempt of its address first, and
    refused (429) without that read once the address made MEDIAGATE_AUTH_FAILURES_PER_MINUTE
    failed attempts this minute. A known token is always looked up: a valid key is never refused
    because others guessed from its address (behind a proxy, everyone's)."""
    token = bearer_token(request.headers)
    if token is None:
        return None
    cache = api_state(request).key_cache
    digest = token_digest(token)
    if digest is not None and (cached := cache.get(digest)) is not None:
        return cached
    settings = resources.settings
    counted = None
    if digest is None or digest not in cache.known:
        counted = await attempt(
            resources.redis,
            settings.redis_namespace,
            SignIn.TENANT,
            client_address(request),
            settings.auth_failures_per_minute,
        )
    if digest is None:
        return None
    generation = cache.generation
    key = await authenticate(resources, token)
    if key is None:
        return None
    cache.know(digest)
    cache.put(digest, key, generation)
    if counted is not None:
        await counted.succeeded()
    return key


async def provide_key(request: Request[Any, Any, Any], resources: Resources) -> VirtualKey:
    if bearer_token(request.headers) is None:
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer mg_...'.",
            code=ErrorCode.MISSING_API_KEY,
        )
    key = await caller_key(request, resources)
    if key is None:
        raise AuthenticationError("Incorrect API key provided.", code=ErrorCode.INVALID_API_KEY)
    await admit(request.scope, resources, key)
    return key


KEY_DEPENDENCY = {"key": Provide(provide_key)}
