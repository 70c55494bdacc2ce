"""The shapes of /v1/models (OpenAI's model objects) and /admin/models (the catalog and the
aliases)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.http.schemas import ListModel, RequestModel, ResponseModel
from app.platform.tables import ModelAlias, as_utc
from app.platform.vocabulary import JobType
from providers.registry import ModelSpec


class AliasCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    targets: list[str] = Field(min_length=1, max_length=8)
    """Catalog model names, tried in order: the next one serves when one keeps failing."""


class ModelEntry(ResponseModel):
    """OpenAI's model object."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(ListModel):
    data: list[ModelEntry]


class CatalogModel(ResponseModel):
    object: Literal["model"] = "model"
    name: str
    type: JobType
    provider: str
    provider_model: str
    aliases: list[str]

    @classmethod
    def of(cls, spec: ModelSpec) -> CatalogModel:
        return CatalogModel(
            name=spec.name,
            type=spec.type,
            provider=spec.provider,
            provider_model=spec.provider_model,
            aliases=list(spec.aliases),
        )


class AliasObject(ResponseModel):
    object: Literal["model_alias"] = "model_alias"
    name: str
    type: JobType
    targets: list[str]
    created_at: int

    @classmethod
    def of(cls, alias: ModelAlias) -> AliasObject:
        return AliasObject(
            name=alias.name,
            type=alias.type,
            targets=list(alias.targets),
            created_at=int(as_utc(alias.created_at).timestamp()),
        )


class CatalogList(ListModel):
    models: list[CatalogModel]
    """Every model of the catalog (built-in and the models file's)."""
    data: list[AliasObject]
    """The aliases."""


class AliasDeleted(ResponseModel):
    object: Literal["model_alias.deleted"] = "model_alias.deleted"
    name: str
    deleted: bool = True
