"""/admin/keys: create, list and revoke virtual keys (admin key required)."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.dependencies import admin_guard
from app.api.render import render_key
from app.api.schemas import KeyCreate, KeyCreated, KeyList, KeyObject
from app.core import keys as key_service


class AdminKeyController(Controller):
    path = "/admin/keys"
    tags = ["admin"]
    guards = [admin_guard]

    @post("/", status_code=201, summary="Create a virtual key (the key is shown once)")
    async def create(self, data: KeyCreate, session: AsyncSession) -> KeyCreated:
        key, plaintext = await key_service.create_key(session, data.name)
        await session.commit()
        return KeyCreated.model_validate({**render_key(key), "key": plaintext})

    @get("/", summary="List virtual keys")
    async def list_keys(self, session: AsyncSession) -> KeyList:
        keys = await key_service.list_keys(session)
        return KeyList.model_validate({"data": [render_key(k) for k in keys]})

    @get("/{key_id:str}", summary="Get a virtual key")
    async def get_key(self, key_id: str, session: AsyncSession) -> KeyObject:
        return KeyObject.model_validate(render_key(await key_service.get_key(session, key_id)))

    @delete("/{key_id:str}", status_code=200, summary="Revoke a virtual key at once")
    async def revoke(self, key_id: str, session: AsyncSession) -> KeyObject:
        key = await key_service.revoke_key(session, key_id)
        await session.commit()
        return KeyObject.model_validate(render_key(key))
