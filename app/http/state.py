"""What the API process keeps for its requests, set once by its lifespan: one typed object
(`ApiState`) in Litestar's state, read through `api_state`, instead of attributes by name."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

from litestar.connection import ASGIConnection
from litestar.datastructures import State

from app.platform.events import EventHub
from app.platform.key_cache import KeyCache
from app.platform.limits import Holds
from app.platform.resources import Resources


@dataclass(slots=True)
class ApiState:
    resources: Resources
    hub: EventHub
    key_cache: KeyCache
    upload_slots: asyncio.Semaphore
    """Multipart bodies read at once (MEDIAGATE_MAX_CONCURRENT_UPLOADS)."""
    batch_slots: asyncio.Semaphore
    """Batch bodies read at once (MEDIAGATE_MAX_CONCURRENT_BATCHES)."""
    streams: Holds
    """Each key's event streams opened with the key."""
    link_streams: Holds
    """Each key's event streams opened through signed links (counted apart)."""
    waits: Holds
    """Each key's requests waiting for their job."""


_NAME = "api"


def set_api_state(state: State, api: ApiState) -> None:
    state[_NAME] = api


def api_state(connection: ASGIConnection[Any, Any, Any, Any] | State) -> ApiState:
    state = connection if isinstance(connection, State) else connection.app.state
    return cast(ApiState, state[_NAME])
