"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy import text

from app.http.schemas import ResponseModel
from app.operations import service as operations
from app.platform.resources import Resources

CHECK_TIMEOUT = 2.0


class Health(ResponseModel):
    status: Literal["ok"] = "ok"


class Readiness(ResponseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
    """Each part (`database`, `redis`, `storage`): `ok`, or `down (<error type>)`."""
    workers_alive: int | None
    """Workers with a fresh heartbeat (None: Redis did not say). None alive does not make the
    API unready: it still takes jobs, which wait for a worker."""


@get("/healthz", tags=["health"], summary="The process is alive")
async def healthz() -> Health:
    return Health()


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "not ready"; say which part, not why in detail
        return name, f"down ({type(exc).__name__})"
    return name, "ok"


@get(
    "/readyz",
    tags=["health"],
    summary="Database, Redis and storage answer",
    responses={503: ResponseSpec(data_container=Readiness, description="A part is down")},
)
async def readyz(resources: Resources) -> Response[Readiness]:
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
    workers_alive = None
    if results["redis"] == "ok":
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                workers_alive = await operations.workers_alive(resources)
        except Exception:
            workers_alive = None
    return Response(
        Readiness(
            status="ok" if ready else "unavailable", checks=results, workers_alive=workers_alive
        ),
        status_code=200 if ready else 503,
    )
