"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get
from sqlalchemy import text

from app.platform.resources import Resources

CHECK_TIMEOUT = 2.0


@get("/healthz", tags=["health"], summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "not ready"; say which part, not why in detail
        return name, f"down ({type(exc).__name__})"
    return name, "ok"


@get("/readyz", tags=["health"], summary="Database, Redis and storage answer")
async def readyz(resources: Resources) -> Response[dict[str, Any]]:
    async def database() -> None:
        async with resources.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    results = dict(
        await asyncio.gather(
            _check("database", database()),
            _check("redis", resources.redis.ping()),
            _check("storage", resources.store.ping()),
        )
    )
    ready = all(v == "ok" for v in results.values())
    return Response(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status_code=200 if ready else 503,
    )
