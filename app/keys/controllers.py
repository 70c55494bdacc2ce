"""/admin/keys: create, list, change and delete virtual keys, and every key's usage (admin key
required). Deleting a key revokes it at once; a worker then deletes all of its media, and the
key's `purge` field shows how far that has got."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from litestar import Controller, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import Parameter
from redis.exceptions import RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.http.dependencies import admin_guard
from app.http.render import render_key
from app.http.schemas import KeyCreate, KeyCreated, KeyList, KeyObject, KeyPatch
from app.keys import service as key_service
from app.media import lifecycle, usage
from app.platform.contract import PURGE_KEY_TASK, purge_job_id
from app.platform.resources import Resources
from app.webhooks import service as webhooks

log = logging.getLogger("mediagate.api")


async def _announce(state: State, resources: Resources, key_id: str) -> None:
    """After a change to a key committed: every API process drops its cached copy (this one at
    once; the others when the notice reaches their event hub)."""
    state.key_cache.on_notice(key_id.encode())
    try:
        await key_service.announce_change(
            resources.redis, resources.settings.redis_namespace, key_id
        )
    except (RedisError, OSError):
        # Their hubs have lost Redis too, and a hub that reconnects empties its cache.
        log.warning("key.change_not_announced key_id=%s", key_id)


async def _checked_webhook(resources: Resources, fields: dict[str, Any]) -> dict[str, Any]:
    """A key's webhook URL must be public and its events known, as a job's."""
    if fields.get("webhook_url"):
        target = await webhooks.check_target(
            fields["webhook_url"],
            fields.get("webhook_events"),
            "webhook_url",
            allow_private=resources.settings.allow_private_urls,
        )
        fields["webhook_events"] = target["events"]
    return fields


class AdminKeyController(Controller):
    path = "/admin/keys"
    tags = ["admin"]
    guards = [admin_guard]

    @post("/", status_code=201, summary="Create a virtual key (the key is shown once)")
    async def create(
        self, data: KeyCreate, session: AsyncSession, resources: Resources
    ) -> KeyCreated:
        limits = await _checked_webhook(resources, data.model_dump(exclude={"name"}))
        key, plaintext = await key_service.create_key(session, data.name, limits)
        await session.commit()
        return KeyCreated.model_validate({**render_key(key), "key": plaintext})

    @get("/", summary="List virtual keys")
    async def list_keys(self, session: AsyncSession) -> KeyList:
        keys = await key_service.list_keys(session)
        return KeyList.model_validate({"data": [render_key(k) for k in keys]})

    @get("/{key_id:str}", summary="Get a virtual key (with its purge progress once deleted)")
    async def get_key(self, key_id: str, session: AsyncSession) -> KeyObject:
        return KeyObject.model_validate(render_key(await key_service.get_key(session, key_id)))

    @patch("/{key_id:str}", summary="Change a key's name, quotas or retention")
    async def update(
        self,
        key_id: str,
        data: KeyPatch,
        session: AsyncSession,
        resources: Resources,
        state: State,
    ) -> KeyObject:
        changes = await _checked_webhook(resources, data.model_dump(exclude_unset=True))
        key = await key_service.update_key(session, key_id, changes)
        await session.commit()
        await _announce(state, resources, key.id)
        return KeyObject.model_validate(render_key(key))

    @delete(
        "/{key_id:str}", status_code=200, summary="Delete a key and, in the background, its media"
    )
    async def delete_key(
        self, key_id: str, session: AsyncSession, resources: Resources, state: State
    ) -> KeyObject:
        key = await lifecycle.delete_key(session, key_id)
        await session.commit()
        await _announce(state, resources, key.id)
        await resources.redis.enqueue_job(PURGE_KEY_TASK, key.id, _job_id=purge_job_id(key.id))
        return KeyObject.model_validate(render_key(key))

    @post(
        "/{key_id:str}/webhook-secret",
        status_code=200,
        summary="Rotate the key's webhook secret (the old one still signs for 24 h)",
    )
    async def rotate_webhook_secret(
        self, key_id: str, session: AsyncSession, resources: Resources, state: State
    ) -> KeyObject:
        key = await key_service.get_key(session, key_id)
        webhooks.rotate_secret(key)
        session.add(key)
        await session.commit()
        await _announce(state, resources, key.id)
        return KeyObject.model_validate(render_key(key))

    @get("/{key_id:str}/usage", summary="A key's storage usage and quota")
    async def key_usage(self, key_id: str, session: AsyncSession) -> dict[str, Any]:
        return await usage.usage_of(session, await key_service.get_key(session, key_id))


@get("/admin/usage", guards=[admin_guard], tags=["admin"], summary="Every key's usage, by bytes")
async def all_usage(
    session: AsyncSession,
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return {"object": "list", "data": await usage.all_usage(session, order=order, limit=limit)}
