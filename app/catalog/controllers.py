"""Models: `GET /v1/models` (OpenAI's list shape) for keys, and `/admin/models` where the operator
manages aliases (names with one or more fallback targets)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, delete, get, post
from sqlmodel.ext.asyncio.session import AsyncSession

from app.catalog import routing
from app.http.dependencies import KEY_DEPENDENCY, admin_guard
from app.http.schemas import AliasCreate
from app.platform.errors import NotFoundError
from app.platform.resources import Resources
from providers.registry import ModelSpec


def _catalog_entry(spec: ModelSpec) -> dict[str, Any]:
    return {
        "object": "model",
        "name": spec.name,
        "type": spec.type,
        "provider": spec.provider,
        "provider_model": spec.provider_model,
        "aliases": list(spec.aliases),
    }


class ModelController(Controller):
    path = "/v1/models"
    tags = ["models"]
    dependencies = KEY_DEPENDENCY

    @get("/", summary="List the models this key may use")
    async def list_models(self, session: AsyncSession, resources: Resources) -> dict[str, Any]:
        aliases = await routing.list_aliases(session)
        return {"object": "list", "data": routing.model_entries(resources.catalog, aliases)}

    @get("/{model:path}", summary="Get a model")
    async def get_model(
        self, model: str, session: AsyncSession, resources: Resources
    ) -> dict[str, Any]:
        name = model.lstrip("/")
        aliases = await routing.list_aliases(session)
        for entry in routing.model_entries(resources.catalog, aliases):
            if entry["id"] == name:
                return entry
        raise NotFoundError(f"The model {name!r} does not exist.", param="model")


class AdminModelController(Controller):
    path = "/admin/models"
    tags = ["admin"]
    guards = [admin_guard]

    @get("/", summary="List the catalog's models and the aliases")
    async def list_models(self, session: AsyncSession, resources: Resources) -> dict[str, Any]:
        aliases = await routing.list_aliases(session)
        return {
            "object": "list",
            "models": [_catalog_entry(spec) for spec in resources.catalog],
            "data": [routing.alias_object(alias) for alias in aliases],
        }

    @post("/", status_code=201, summary="Create or replace an alias")
    async def put_alias(
        self, data: AliasCreate, session: AsyncSession, resources: Resources
    ) -> dict[str, Any]:
        alias = await routing.put_alias(session, resources.catalog, data.name, data.targets)
        await session.commit()
        return routing.alias_object(alias)

    @delete("/{name:path}", status_code=200, summary="Delete an alias")
    async def delete_alias(self, name: str, session: AsyncSession) -> dict[str, Any]:
        name = name.lstrip("/")
        await routing.delete_alias(session, name)
        await session.commit()
        return {"object": "model_alias.deleted", "name": name, "deleted": True}
