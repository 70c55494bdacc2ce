"""/v1/batches: submit up to 1,000 jobs at once (a JSON array, or JSONL as OpenAI's Batch API
writes it), read a batch's counts, follow all of it on one SSE stream, cancel it, and read its
results as JSONL."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, Parameter
from litestar.types import ASGIApp

from app.batches import events as batch_events
from app.batches import service as batch_service
from app.batches.bodies import parse_items
from app.batches.schemas import BatchCost, BatchCounts, BatchList, BatchObject
from app.batches.service import BatchView
from app.http.bodies import read_held
from app.http.dependencies import event_hub
from app.http.render import base_url
from app.http.sse import EventStream, resume_point
from app.http.state import api_state
from app.jobs.responses import frame, render_job
from app.keys.dependencies import KEY_DEPENDENCY
from app.platform import idempotency as claims
from app.platform.resources import Resources
from app.platform.tables import VirtualKey, iso
from app.platform.vocabulary import BatchEvent, BatchStatus
from providers.prices import dollars


def render_batch(
    request: Request[Any, Any, Any], resources: Resources, view: BatchView
) -> BatchObject:
    base = base_url(request, resources.settings)
    batch = view.batch
    return BatchObject(
        id=batch.id,
        status=view.status,
        created_at=iso(batch.created_at) or "",
        cancel_requested_at=iso(batch.cancel_requested_at),
        request_counts=BatchCounts(
            total=batch.total, **{str(k): v for k, v in view.counts.items()}
        ),
        cost=BatchCost(estimate=dollars(view.estimate), actual=dollars(view.actual)),
        urls={
            "events": f"{base}/v1/batches/{batch.id}/events",
            "results": f"{base}/v1/batches/{batch.id}/results",
        },
    )


class BatchController(Controller):
    path = "/v1/batches"
    tags = ["batches"]
    dependencies = KEY_DEPENDENCY

    @post(
        "/",
        status_code=202,
        summary="Submit up to 1,000 jobs as one batch",
        description=(
            "The body is a JSON array of `POST /v1/jobs` bodies, each with its own `custom_id` "
            '(or `{"requests": [...]}`), or JSONL with `Content-Type: application/jsonl`: one '
            'such body per line, or OpenAI Batch API lines `{"custom_id", "method": "POST", '
            '"url": "/v1/jobs", "body"}`. All jobs are created or none; an '
            "`Idempotency-Key` makes a retried submit return the same batch."
        ),
    )
    async def create(
        self, request: Request[Any, Any, Any], key: VirtualKey, resources: Resources
    ) -> Response[BatchObject]:
        async with read_held(request, api_state(request).batch_slots, "batch bodies") as raw:
            items, parsed = parse_items(request.headers.get("content-type", ""), raw)
        header = request.headers.get(claims.HEADER)
        claim = claims.claim_of(header, request.method, request.url.path, {"r": parsed})
        view, _ = await batch_service.submit(resources, key, items, claim)
        return Response(
            render_batch(request, resources, view),
            status_code=202,
            headers={"Location": f"/v1/batches/{view.batch.id}"},
        )

    @get("/", summary="List batches, newest first")
    async def list_batches(
        self,
        request: Request[Any, Any, Any],
        key: VirtualKey,
        resources: Resources,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        after: str | None = None,
    ) -> BatchList:
        views, more = await batch_service.page(resources, key.id, limit=limit, after=after)
        return BatchList(data=[render_batch(request, resources, v) for v in views], has_more=more)

    @get("/{batch_id:str}", summary="Get a batch with its counts by status")
    async def get_batch(
        self, request: Request[Any, Any, Any], batch_id: str, key: VirtualKey, resources: Resources
    ) -> BatchObject:
        return render_batch(
            request, resources, await batch_service.read(resources, key.id, batch_id)
        )

    @post("/{batch_id:str}/cancel", status_code=200, summary="Cancel a batch's unfinished jobs")
    async def cancel(
        self, request: Request[Any, Any, Any], batch_id: str, key: VirtualKey, resources: Resources
    ) -> BatchObject:
        view = await batch_service.cancel(resources, key.id, batch_id)
        return render_batch(request, resources, view)

    @get(
        "/{batch_id:str}/results",
        summary="A batch's jobs as JSONL (one job object per line, with its custom_id)",
        media_type="application/jsonl",
        responses={
            200: ResponseSpec(
                data_container=str,
                media_type="application/jsonl",
                description="One job object per line; match lines by `custom_id`",
                generate_examples=False,
            )
        },
    )
    async def results(
        self, request: Request[Any, Any, Any], batch_id: str, key: VirtualKey, resources: Resources
    ) -> Response[bytes]:
        jobs, outputs = await batch_service.jobs_of(resources, key.id, batch_id)
        settings = resources.settings
        lines = [
            render_job(request, settings, job, outputs[job.id]).model_dump_json().encode()
            for job in jobs
        ]
        return Response(b"\n".join(lines) + b"\n", media_type="application/jsonl")

    @get(
        "/{batch_id:str}/events",
        summary="Stream a whole batch's events (SSE)",
        media_type="text/event-stream",
        responses={
            200: ResponseSpec(
                data_container=str,
                media_type="text/event-stream",
                description=(
                    "`id:` per-batch sequence; `event:` job.succeeded, job.failed or "
                    "job.canceled (`data:` the job object, with its custom_id) as each job ends, "
                    "then batch.completed"
                ),
                generate_examples=False,
            )
        },
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        batch_id: str,
        key: VirtualKey,
        resources: Resources,
        last_event_id: Annotated[
            str | None, HeaderParameter(name="Last-Event-ID", required=False)
        ] = None,
    ) -> ASGIApp:
        start = resume_point(last_event_id, None)
        streams = api_state(request).streams
        hold = streams.take(key.id, key.max_streams)
        try:
            view = await batch_service.read(resources, key.id, batch_id)
            await batch_events.open_stream(
                resources.redis, resources.bus, view.batch.id, view.batch.total
            )
        except BaseException:
            hold.release()
            raise
        ended = view.status in (BatchStatus.COMPLETED, BatchStatus.CANCELED)
        settings = resources.settings
        base = base_url(request, settings)
        return EventStream(
            event_hub(request),
            resources.bus,
            view.batch.id,
            start,
            (BatchEvent.COMPLETED, {"id": view.batch.id}) if ended else None,
            lambda event: frame(event, base, settings),
            settings.sse_max_seconds,
            hold,
            terminal=frozenset({BatchEvent.COMPLETED}),
        )
