"""Models: `GET /v1/models` (OpenAI's list shape) for keys, and `/admin/models` where the operator
manages aliases (names with one or more fallback targets)."""

from __future__ import annotations

from litestar import Controller, delete, get, post

from app.catalog import routing
from app.catalog.schemas import (
    AliasCreate,
    AliasDeleted,
    AliasObject,
    CatalogList,
    CatalogModel,
    ModelEntry,
    ModelList,
)
from app.http.dependencies import admin_guard
from app.keys.dependencies import KEY_DEPENDENCY
from app.platform.resources import Resources


class ModelController(Controller):
    path = "/v1/models"
    tags = ["models"]
    dependencies = KEY_DEPENDENCY

    @get("/", summary="List the models this key may use")
    async def list_models(self, resources: Resources) -> ModelList:
        entries = await routing.models(resources)
        return ModelList(data=[ModelEntry.model_validate(entry) for entry in entries])

    @get("/{model:path}", summary="Get a model")
    async def get_model(self, model: str, resources: Resources) -> ModelEntry:
        return ModelEntry.model_validate(await routing.model(resources, model.lstrip("/")))


class AdminModelController(Controller):
    path = "/admin/models"
    tags = ["admin"]
    guards = [admin_guard]

    @get("/", summary="List the catalog's models and the aliases")
    async def list_models(self, resources: Resources) -> CatalogList:
        aliases = await routing.aliases(resources)
        return CatalogList(
            models=[CatalogModel.of(spec) for spec in resources.catalog],
            data=[AliasObject.of(alias) for alias in aliases],
        )

    @post("/", status_code=201, summary="Create or replace an alias")
    async def put_alias(self, data: AliasCreate, resources: Resources) -> AliasObject:
        return AliasObject.of(await routing.save_alias(resources, data.name, data.targets))

    @delete("/{name:path}", status_code=200, summary="Delete an alias")
    async def delete_alias(self, name: str, resources: Resources) -> AliasDeleted:
        name = name.lstrip("/")
        await routing.remove_alias(resources, name)
        return AliasDeleted(name=name)
