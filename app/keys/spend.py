"""What a key spends: the charges of its jobs by UTC day, its monthly budgets (the hard one
refuses submits, the soft one warns once a month), and the spend report of /v1/usage.

Money is integer micro-dollars (providers/prices.py). A submit reserves its estimate: the hard
budget is checked under the key's row lock against this month's charges plus the estimates of
the key's jobs still queued or running, so concurrent submits decide one after another and the
budget is overshot by no more than what accepted jobs cost beyond their estimates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.platform.errors import QuotaExceededError
from app.platform.tables import Job, KeySpend, VirtualKey, utcnow
from app.platform.vocabulary import ACTIVE_STATUSES, ErrorCode
from providers.prices import dollars


def day_of(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m-%d")


def month_of(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m")


async def add_charge(session: AsyncSession, key_id: str, amount: int, day: str) -> None:
    """Add `amount` to the key's spend of `day` (in the caller's transaction)."""
    if amount <= 0:
        return
    moved = await session.exec(
        update(KeySpend)
        .where(col(KeySpend.key_id) == key_id, col(KeySpend.day) == day)
        .values(micros=KeySpend.micros + amount)
    )
    if not moved.rowcount:
        session.add(KeySpend(key_id=key_id, day=day, micros=amount))
        await session.flush()


async def spent_since(session: AsyncSession, key_id: str, first_day: str | None) -> int:
    query = select(func.coalesce(func.sum(KeySpend.micros), 0)).where(
        col(KeySpend.key_id) == key_id
    )
    if first_day is not None:
        query = query.where(col(KeySpend.day) >= first_day)
    return int((await session.exec(query)).one())


async def reserved(session: AsyncSession, key_id: str) -> int:
    """The estimates of the key's jobs not ended yet, less what they were charged already."""
    left = func.coalesce(Job.cost_estimate_micros, 0) - Job.cost_micros
    total = (
        await session.exec(
            select(func.coalesce(func.sum(case((left > 0, left), else_=0)), 0)).where(
                col(Job.key_id) == key_id, col(Job.status).in_(ACTIVE_STATUSES)
            )
        )
    ).one()
    return int(total)


async def check_budget(session: AsyncSession, key: VirtualKey, estimate: int | None) -> None:
    """Refuse a job that would take the key past its hard monthly budget (429 budget_exceeded).
    `key` is the row the caller locked, so concurrent submits of the key decide in turn."""
    limit = key.max_spend_micros_per_month
    if limit is None:
        return
    month = month_of()
    spent = await spent_since(session, key.id, f"{month}-01")
    held = await reserved(session, key.id)
    if spent + held + (estimate or 0) > limit:
        raise QuotaExceededError(
            f"This job (estimated ${dollars(estimate or 0):.2f}) would take this key past its "
            f"budget of ${dollars(limit):.2f} for {month}: spent ${dollars(spent):.2f}, and "
            f"${dollars(held):.2f} held by jobs still queued or running. The budget renews on "
            "the first of next month (UTC), or ask for a larger one.",
            code=ErrorCode.BUDGET_EXCEEDED,
        )


async def claim_warning(session: AsyncSession, key_id: str) -> dict[str, Any] | None:
    """If this month's spend has crossed the key's soft budget and nobody has warned for this
    month yet: mark it warned (one winner among concurrent workers) and return the warning's
    data; else None. The caller commits, then sends the warning."""
    key = await session.get(VirtualKey, key_id)
    if key is None or key.soft_spend_micros_per_month is None:
        return None
    month = month_of()
    if key.budget_warned_month == month:
        return None
    spent = await spent_since(session, key_id, f"{month}-01")
    if spent < key.soft_spend_micros_per_month:
        return None
    won = await session.exec(
        update(VirtualKey)
        .where(
            col(VirtualKey.id) == key_id,
            (col(VirtualKey.budget_warned_month).is_(None))
            | (col(VirtualKey.budget_warned_month) != month),
        )
        .values(budget_warned_month=month)
    )
    if not won.rowcount:
        return None
    return {
        "object": "key.budget_warning",
        "key_id": key_id,
        "month": month,
        "spend": dollars(spent),
        "soft_budget": dollars(key.soft_spend_micros_per_month),
        "max_spend_per_month": dollars(key.max_spend_micros_per_month),
    }


async def reports(session: AsyncSession, keys: Sequence[VirtualKey]) -> dict[str, dict[str, Any]]:
    """Spend today, this month and ever (USD), with the budgets, of each key (one query)."""
    now = utcnow()
    today, first = day_of(now), f"{month_of(now)}-01"
    rows = (
        await session.exec(
            select(
                col(KeySpend.key_id),
                func.sum(case((col(KeySpend.day) >= today, KeySpend.micros), else_=0)),
                func.sum(case((col(KeySpend.day) >= first, KeySpend.micros), else_=0)),
                func.sum(KeySpend.micros),
            )
            .where(col(KeySpend.key_id).in_([k.id for k in keys]))
            .group_by(col(KeySpend.key_id))
        )
    ).all()
    sums = {key_id: (int(d or 0), int(m or 0), int(t or 0)) for key_id, d, m, t in rows}
    found = {}
    for key in keys:
        day, month, ever = sums.get(key.id, (0, 0, 0))
        found[key.id] = {
            "currency": "usd",
            "today": dollars(day),
            "this_month": dollars(month),
            "lifetime": dollars(ever),
            "max_spend_per_month": dollars(key.max_spend_micros_per_month),
            "soft_spend_per_month": dollars(key.soft_spend_micros_per_month),
        }
    return found
