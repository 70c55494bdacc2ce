"""Virtual API keys: created once (the plaintext is shown once), stored as a sha256, revocable.

Two kinds of function, named by what differs: `insert_key`, `select_key(s)`, `change_key`,
`revoke_key` and `lock_key` work on the key's row in the caller's transaction (the caller
commits); `create`, `list_all`, `read`, `update` and `rotate_webhook_secret` are the use cases,
each owning its unit of work and announcing the change to every API process."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.media.usage import create_usage_rows
from app.platform.errors import AuthenticationError, InvalidRequestError, NotFoundError
from app.platform.ids import hash_key, new_api_key, new_id
from app.platform.key_cache import KeyCache
from app.platform.redis_keys import keys_channel
from app.platform.resources import Resources
from app.platform.tables import VirtualKey, utcnow
from app.webhooks.service import check_target, new_secret, rotate_secret
from providers.prices import micros

WEBHOOK_FIELDS = ("webhook_url", "webhook_events")
log = logging.getLogger("mediagate.keys")

LIMIT_FIELDS = (
    "max_bytes",
    "max_objects",
    "max_concurrent_jobs",
    "max_queued_jobs",
    "max_streams",
    "retention_days",
    "requests_per_minute",
    "max_priority",
)
BUDGET_FIELDS = {
    "max_spend_per_month": "max_spend_micros_per_month",
    "soft_spend_per_month": "soft_spend_micros_per_month",
}
"""Budgets are given in dollars and kept in micro-dollars."""


def _apply(key: VirtualKey, name: str, value: Any) -> None:
    if name in LIMIT_FIELDS + WEBHOOK_FIELDS:
        setattr(key, name, value)
    elif name in BUDGET_FIELDS:
        amount = None if value is None else micros(Decimal(str(value)))
        setattr(key, BUDGET_FIELDS[name], amount)
        if name == "soft_spend_per_month":
            key.budget_warned_month = None  # a new soft budget warns afresh


async def insert_key(
    session: AsyncSession, name: str, limits: Mapping[str, Any] | None = None
) -> tuple[VirtualKey, str]:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequestError("name must be 1 to 200 characters", param="name")
    plaintext = new_api_key()
    key = VirtualKey(
        id=new_id("key"), name=name, prefix=plaintext[:8], key_hash=hash_key(plaintext)
    )
    for field_name, value in (limits or {}).items():
        _apply(key, field_name, value)
    key.webhook_secret = new_secret()
    session.add(key)
    await session.flush()  # the usage rows' foreign key needs the key first
    await create_usage_rows(session, key.id)
    return key, plaintext


async def select_keys(session: AsyncSession) -> Sequence[VirtualKey]:
    result = await session.exec(select(VirtualKey).order_by(col(VirtualKey.id).desc()))
    return result.all()


async def select_key(session: AsyncSession, key_id: str) -> VirtualKey:
    key = await session.get(VirtualKey, key_id)
    if key is None:
        raise NotFoundError(f"no key {key_id!r}", param="id")
    return key


async def lock_key(
    session: AsyncSession, key_id: str, *, writer: bool = True, allow_revoked: bool = False
) -> VirtualKey:
    """The key's row as it is now, locked (`FOR UPDATE`) until the transaction ends: the one key
    lock. Deleting a key takes it (`writer=False`: any key that exists, else 404), and so does
    every write made on the key's behalf (an upload, a job, an output and the usage they move)
    in the transaction that records it, which must find the key still able to write: a request
    authenticated before the deletion cannot commit after it. Outputs of a revoked (not deleted)
    key's running jobs are still recorded (`allow_revoked`); a new upload or job of a revoked
    key is not."""
    result = await session.exec(
        select(VirtualKey)
        .where(VirtualKey.id == key_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    key = result.first()
    if not writer:
        if key is None:
            raise NotFoundError(f"no key {key_id!r}", param="id")
        return key
    if key is None or key.deleted_at is not None:
        raise AuthenticationError("This API key has been deleted.")
    if key.revoked_at is not None and not allow_revoked:
        raise AuthenticationError("This API key has been revoked.")
    return key


async def change_key(session: AsyncSession, key_id: str, changes: Mapping[str, Any]) -> VirtualKey:
    """Change a key's name or limits; a deleted key cannot change."""
    key = await select_key(session, key_id)
    if key.deleted_at is not None:
        raise NotFoundError(f"no key {key_id!r}", param="id")
    for name, value in changes.items():
        if name == "name":
            if value is None or not str(value).strip():
                raise InvalidRequestError("name must be 1 to 200 characters", param="name")
            key.name = str(value).strip()
        else:
            _apply(key, name, value)
    session.add(key)
    await session.flush()
    return key


async def revoke_key(session: AsyncSession, key_id: str) -> VirtualKey:
    key = await select_key(session, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
        await session.flush()
    return key


def token_digest(token: str) -> str | None:
    """The hash a well-formed token is stored under; None for one that cannot be a key."""
    if not token.startswith("mg_") or len(token) > 128:
        return None
    return hash_key(token)


async def active_digests(resources: Resources, limit: int) -> list[str]:
    """The token hashes of the active keys (at most `limit`), for `KeyCache.known`."""
    async with resources.sessionmaker() as session:
        rows = await session.exec(
            select(col(VirtualKey.key_hash))
            .where(col(VirtualKey.revoked_at).is_(None), col(VirtualKey.deleted_at).is_(None))
            .limit(limit)
        )
        return list(rows.all())


async def authenticate(resources: Resources, token: str) -> VirtualKey | None:
    """The active key whose hash matches `token`, else None."""
    digest = token_digest(token)
    if digest is None:
        return None
    async with resources.sessionmaker() as session:
        found = await session.exec(select(VirtualKey).where(VirtualKey.key_hash == digest))
        key = found.first()
    if key is None or key.revoked_at is not None:
        return None
    # The lookup is by an unguessable hash; compare again in constant time all the same.
    return key if hmac.compare_digest(key.key_hash, digest) else None


def change_notice(key_id: str, digest: str | None = None) -> bytes:
    """What a key's change notice says: its id, and for a new key `id:hash` (`on_notice`)."""
    return (f"{key_id}:{digest}" if digest else key_id).encode()


async def announce_change(
    redis: Redis, namespace: str, key_id: str, digest: str | None = None
) -> None:
    """Tell every API process to drop its cached copy of the key (after the change committed);
    with `digest`, a new key's token hash, which every process then knows (`KeyCache.known`)."""
    await redis.publish(keys_channel(namespace), change_notice(key_id, digest))


# -- use cases (each its own unit of work) ----------------------------------------------------


async def announce(
    resources: Resources, cache: KeyCache | None, key_id: str, digest: str | None = None
) -> None:
    """After a change to a key committed: every API process drops its cached copy (this one at
    once; the others when the notice reaches their event hub); with `digest`, a new key's."""
    if cache is not None:
        cache.on_notice(change_notice(key_id, digest))
    try:
        await announce_change(resources.redis, resources.settings.redis_namespace, key_id, digest)
    except (RedisError, OSError):
        # Their hubs have lost Redis too, and a hub that reconnects empties its cache.
        log.warning("key.change_not_announced key_id=%s", key_id)


async def _checked_webhook(resources: Resources, fields: dict[str, Any]) -> dict[str, Any]:
    """A key's webhook URL must be public and its events known, as a job's."""
    if fields.get("webhook_url"):
        target = await check_target(
            fields["webhook_url"],
            fields.get("webhook_events"),
            "webhook_url",
            allow_private=resources.settings.allow_private_urls,
            resolve_seconds=resources.settings.url_resolve_seconds,
        )
        fields["webhook_events"] = target["events"]
    return fields


async def create(
    resources: Resources, name: str, limits: dict[str, Any], cache: KeyCache | None = None
) -> tuple[VirtualKey, str]:
    """A new key and its plaintext (shown once); every API process learns its token's hash, so
    its first request is let in whatever others guessed from its address."""
    limits = await _checked_webhook(resources, limits)
    async with resources.sessionmaker() as session:
        created = await insert_key(session, name, limits)
        await session.commit()
    await announce(resources, cache, created[0].id, created[0].key_hash)
    return created


async def list_all(resources: Resources) -> Sequence[VirtualKey]:
    async with resources.sessionmaker() as session:
        return await select_keys(session)


async def read(resources: Resources, key_id: str) -> VirtualKey:
    async with resources.sessionmaker() as session:
        return await select_key(session, key_id)


async def update(
    resources: Resources, key_id: str, changes: dict[str, Any], cache: KeyCache | None
) -> VirtualKey:
    changes = await _checked_webhook(resources, changes)
    async with resources.sessionmaker() as session:
        key = await change_key(session, key_id, changes)
        await session.commit()
    await announce(resources, cache, key.id)
    return key


async def rotate_webhook_secret(
    resources: Resources, key_id: str, cache: KeyCache | None
) -> VirtualKey:
    """A new signing secret; the old one still signs for a day."""
    async with resources.sessionmaker() as session:
        key = await select_key(session, key_id)
        rotate_secret(key)
        session.add(key)
        await session.commit()
    await announce(resources, cache, key.id)
    return key
