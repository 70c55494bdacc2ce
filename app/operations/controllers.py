"""`GET /metrics` (Prometheus text format, no key: it carries no tenant's data) and
`GET /admin/workers` (the live workers)."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec

from app.http.dependencies import admin_guard
from app.operations import service
from app.operations.schemas import WorkerList, WorkerObject
from app.platform.resources import Resources

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics of this process (every process's with --workers) and the pool",
    responses={
        200: ResponseSpec(
            data_container=str,
            media_type="text/plain",
            description="Prometheus text format",
            generate_examples=False,
        )
    },
)
async def metrics(resources: Resources) -> Response[bytes]:
    return Response(
        await service.metrics_text(resources), headers={"Content-Type": PROMETHEUS_TEXT}
    )


class AdminWorkerController(Controller):
    path = "/admin/workers"
    tags = ["admin"]
    guards = [admin_guard]

    @get("/", summary="The live workers (a fresh heartbeat)")
    async def list_workers(self, resources: Resources) -> WorkerList:
        return WorkerList(data=[WorkerObject.of(b) for b in await service.workers(resources)])
