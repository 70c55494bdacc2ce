"""Model routing: a requested name becomes an ordered list of catalog models (a built-in model is a
list of one; an alias lists its fallback targets). Aliases live in the database, are managed through
the admin API and may be seeded from the models file."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.platform.errors import InvalidRequestError, ModelNotFoundError, NotFoundError
from app.platform.resources import Resources
from app.platform.tables import ModelAlias, as_utc, utcnow
from providers.base import MediaType
from providers.registry import Catalog, ModelSpec

log = logging.getLogger("mediagate.routing")

MAX_TARGETS = 8


@dataclass(frozen=True, slots=True)
class Route:
    """The name a client asked for and the models that may serve it, in order."""

    name: str
    targets: tuple[ModelSpec, ...]

    @property
    def type(self) -> str:
        return self.targets[0].type


async def resolve(session: AsyncSession, catalog: Catalog, name: str) -> Route:
    spec = catalog.get(name)
    if spec is not None:
        return Route(name, (spec,))
    alias = await session.get(ModelAlias, name)
    if alias is not None:
        targets = tuple(s for s in (catalog.get(t) for t in alias.targets) if s is not None)
        if targets:
            return Route(alias.name, targets)
    raise ModelNotFoundError(
        f"The model {name!r} does not exist or its provider is not configured here.",
        param="model",
    )


def check_targets(catalog: Catalog, name: str, targets: Sequence[str]) -> MediaType:
    """Validate an alias's targets; returns the media type they share."""
    if catalog.get(name) is not None:
        raise InvalidRequestError(f"{name!r} is already a model name.", param="name")
    if not 1 <= len(targets) <= MAX_TARGETS:
        raise InvalidRequestError(
            f"an alias needs between 1 and {MAX_TARGETS} targets", param="targets"
        )
    types: set[MediaType] = set()
    for index, target in enumerate(targets):
        spec = catalog.get(target)
        if spec is None:
            raise InvalidRequestError(
                f"target {target!r} is not a model available here", param=f"targets.{index}"
            )
        types.add(spec.type)
    if len(types) > 1:
        raise InvalidRequestError(
            f"an alias's targets must all make the same media type, got {', '.join(sorted(types))}",
            param="targets",
        )
    return types.pop()


async def put_alias(
    session: AsyncSession, catalog: Catalog, name: str, targets: Sequence[str]
) -> ModelAlias:
    """Create the alias, or replace its targets."""
    media_type = check_targets(catalog, name, targets)
    canonical = [spec.name for spec in (catalog.get(t) for t in targets) if spec is not None]
    alias = await session.get(ModelAlias, name)
    if alias is None:
        alias = ModelAlias(name=name, type=media_type, targets=canonical)
    else:
        alias.type, alias.targets, alias.updated_at = media_type, canonical, utcnow()
    session.add(alias)
    await session.flush()
    return alias


async def list_aliases(session: AsyncSession) -> Sequence[ModelAlias]:
    return (await session.exec(select(ModelAlias).order_by(col(ModelAlias.name)))).all()


async def delete_alias(session: AsyncSession, name: str) -> None:
    alias = await session.get(ModelAlias, name)
    if alias is None:
        raise NotFoundError(f"No alias named {name!r}.", param="name")
    await session.delete(alias)
    await session.flush()


async def seed_aliases(
    session: AsyncSession, catalog: Catalog, aliases: Mapping[str, Sequence[str]]
) -> int:
    """Upsert the models file's aliases; ones naming models unavailable here are skipped."""
    seeded = 0
    for name, targets in aliases.items():
        try:
            async with session.begin_nested():
                await put_alias(session, catalog, name, targets)
            seeded += 1
        except InvalidRequestError as exc:
            log.warning("models.alias_skipped name=%s reason=%s", name, exc.message)
        except IntegrityError:
            pass  # another process seeded it at the same moment
    return seeded


def model_entries(catalog: Catalog, aliases: Sequence[ModelAlias]) -> list[dict[str, Any]]:
    """OpenAI's model objects for every name a key may use here."""
    entries = [
        {"id": name, "object": "model", "created": spec.created, "owned_by": spec.provider}
        for name in catalog.names()
        if (spec := catalog.get(name)) is not None
    ]
    for alias in aliases:
        if any(catalog.get(t) is not None for t in alias.targets):
            created = int(as_utc(alias.created_at).timestamp())
            entries.append(
                {"id": alias.name, "object": "model", "created": created, "owned_by": "mediagate"}
            )
    return entries


# -- use cases (each its own unit of work) ----------------------------------------------------


async def models(resources: Resources) -> list[dict[str, Any]]:
    """Every name a key may use: the catalog's models and the aliases."""
    async with resources.sessionmaker() as session:
        return model_entries(resources.catalog, await list_aliases(session))


async def model(resources: Resources, name: str) -> dict[str, Any]:
    for entry in await models(resources):
        if entry["id"] == name:
            return entry
    raise NotFoundError(f"The model {name!r} does not exist.", param="model")


async def aliases(resources: Resources) -> Sequence[ModelAlias]:
    async with resources.sessionmaker() as session:
        return await list_aliases(session)


async def save_alias(resources: Resources, name: str, targets: Sequence[str]) -> ModelAlias:
    async with resources.sessionmaker() as session:
        alias = await put_alias(session, resources.catalog, name, targets)
        await session.commit()
    return alias


async def remove_alias(resources: Resources, name: str) -> None:
    async with resources.sessionmaker() as session:
        await delete_alias(session, name)
        await session.commit()


async def seed_from_models_file(resources: Resources) -> None:
    """At start: the models file's aliases, upserted."""
    aliases = resources.models_file.aliases
    if not aliases:
        return
    async with resources.sessionmaker() as session:
        seeded = await seed_aliases(session, resources.catalog, aliases)
        await session.commit()
    log.info("models.aliases_seeded count=%d", seeded)
