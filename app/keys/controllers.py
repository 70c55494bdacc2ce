"""/admin/keys: create, list, change and delete virtual keys, and every key's usage (admin key
required). Deleting a key revokes it at once; a worker then deletes all of its media, and the
key's `purge` field shows how far that has got."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import Parameter

from app.http.dependencies import admin_guard
from app.http.state import api_state
from app.keys import service as key_service
from app.keys.schemas import KeyCreate, KeyCreated, KeyList, KeyObject, KeyPatch
from app.media import lifecycle, usage
from app.media.schemas import Usage, UsageList
from app.platform.resources import Resources


class AdminKeyController(Controller):
    path = "/admin/keys"
    tags = ["admin"]
    guards = [admin_guard]

    @post("/", status_code=201, summary="Create a virtual key (the key is shown once)")
    async def create(self, data: KeyCreate, resources: Resources, state: State) -> KeyCreated:
        limits = data.model_dump(exclude={"name"})
        key, plaintext = await key_service.create(
            resources, data.name, limits, api_state(state).key_cache
        )
        return KeyCreated(**KeyObject.of(key).model_dump(), key=plaintext)

    @get("/", summary="List virtual keys")
    async def list_keys(self, resources: Resources) -> KeyList:
        keys = await key_service.list_all(resources)
        return KeyList(data=[KeyObject.of(k) for k in keys])

    @get("/{key_id:str}", summary="Get a virtual key (with its purge progress once deleted)")
    async def get_key(self, key_id: str, resources: Resources) -> KeyObject:
        return KeyObject.of(await key_service.read(resources, key_id))

    @patch("/{key_id:str}", summary="Change a key's name, quotas or retention")
    async def update(
        self, key_id: str, data: KeyPatch, resources: Resources, state: State
    ) -> KeyObject:
        changes = data.model_dump(exclude_unset=True)
        key = await key_service.update(resources, key_id, changes, api_state(state).key_cache)
        return KeyObject.of(key)

    @delete(
        "/{key_id:str}", status_code=200, summary="Delete a key and, in the background, its media"
    )
    async def delete_key(self, key_id: str, resources: Resources, state: State) -> KeyObject:
        key = await lifecycle.delete_key_and_media(resources, key_id)
        await key_service.announce(resources, api_state(state).key_cache, key.id)
        return KeyObject.of(key)

    @post(
        "/{key_id:str}/webhook-secret",
        status_code=200,
        summary="Rotate the key's webhook secret (the old one still signs for 24 h)",
    )
    async def rotate_webhook_secret(
        self, key_id: str, resources: Resources, state: State
    ) -> KeyObject:
        key = await key_service.rotate_webhook_secret(resources, key_id, api_state(state).key_cache)
        return KeyObject.of(key)

    @get("/{key_id:str}/usage", summary="A key's storage usage and quota")
    async def key_usage(self, key_id: str, resources: Resources) -> Usage:
        key = await key_service.read(resources, key_id)
        return Usage.model_validate(await usage.report(resources, key))


@get("/admin/usage", guards=[admin_guard], tags=["admin"], summary="Every key's usage, by bytes")
async def all_usage(
    resources: Resources,
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> UsageList:
    found = await usage.report_all(resources, order=order, limit=limit)
    return UsageList(data=[Usage.model_validate(entry) for entry in found])
