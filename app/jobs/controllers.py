"""/v1/jobs: submit, read, list, cancel and delete generation jobs (the job's event stream is
`stream_controller`, its webhooks `app/webhooks/controllers`)."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter

from app.http.bodies import preferred_wait
from app.http.dependencies import event_hub, waiting
from app.jobs import service as job_service
from app.jobs.responses import render_job
from app.jobs.schemas import JobCreate, JobDeleted, JobList, JobObject
from app.keys.dependencies import KEY_DEPENDENCY
from app.media.service import outputs_for
from app.platform import idempotency as claims
from app.platform.resources import Resources
from app.platform.tables import VirtualKey
from app.platform.vocabulary import TERMINAL_STATUSES

POLL_AFTER_SECONDS = 2
"""What a 202's `Retry-After` suggests to a client that polls."""


class JobController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]
    dependencies = KEY_DEPENDENCY

    @post("/", status_code=202, summary="Submit a generation job")
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JobCreate,
        key: VirtualKey,
        resources: Resources,
    ) -> Response[JobObject]:
        """`Prefer: wait=N`: answers 200 with the job if it ends within N seconds (at most
        MEDIAGATE_MAX_WAIT_SECONDS), else 202 as without it."""
        header = request.headers.get(claims.HEADER)
        claim = None
        if header is not None:
            body = data.model_dump(mode="json")
            claim = claims.claim_of(header, request.method, request.url.path, body)
        asked = preferred_wait(request)
        seconds = None if asked is None else min(asked, resources.settings.max_wait_seconds)
        with contextlib.ExitStack() as held:
            if seconds:  # before the submit: a request refused for waiting changes nothing
                held.enter_context(waiting(request, key))
            job, created = await job_service.submit(
                resources,
                key,
                data.type,
                data.model,
                data.input,
                claim,
                priority=data.priority,
                deadline_seconds=data.deadline_seconds,
                webhook=data.webhook.model_dump() if data.webhook else None,
            )
            if seconds:
                job = await job_service.wait(resources, event_hub(request), job.id, seconds)
        # A new job has no outputs yet; a repeated request's job (or a waited-for one) may have.
        outputs = [] if created and not seconds else await outputs_for(resources, job.id)
        headers = {"Location": f"/v1/jobs/{job.id}"}
        if seconds is not None:
            headers["Preference-Applied"] = f"wait={seconds:g}"
        ended = job.status in TERMINAL_STATUSES
        if not ended:
            # When to look again (or follow /v1/jobs/{id}/events and never poll).
            headers["Retry-After"] = str(POLL_AFTER_SECONDS)
        return Response(
            render_job(request, resources.settings, job, outputs),
            status_code=200 if ended and seconds is not None else 202,
            headers=headers,
        )

    @get("/", summary="List jobs, newest first")
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        key: VirtualKey,
        resources: Resources,
        status: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        after: str | None = None,
    ) -> JobList:
        found = await job_service.page(resources, key.id, status=status, limit=limit, after=after)
        data = [render_job(request, resources.settings, j, found.outputs[j.id]) for j in found.jobs]
        return JobList(
            data=data,
            has_more=found.has_more,
            first_id=found.jobs[0].id if found.jobs else None,
            last_id=found.jobs[-1].id if found.jobs else None,
        )

    @get("/{job_id:str}", summary="Get a job (with ?wait=N: once its status changes)")
    async def get_job(
        self,
        request: Request[Any, Any, Any],
        job_id: str,
        key: VirtualKey,
        resources: Resources,
        wait: Annotated[float | None, Parameter(ge=0, le=3600)] = None,
    ) -> JobObject:
        """With `wait`, answers when the job's status changes or it ends, or after `wait`
        seconds (at most MEDIAGATE_MAX_WAIT_SECONDS), woken by the job's events."""
        view = await job_service.read(resources, key.id, job_id)
        seconds = min(wait or 0, resources.settings.max_wait_seconds)
        if seconds and view.job.status not in TERMINAL_STATUSES:
            with waiting(request, key):
                await job_service.wait(
                    resources,
                    event_hub(request),
                    view.job.id,
                    seconds,
                    changed_from=view.job.status,
                )
            view = await job_service.read(resources, key.id, job_id)
        queue = await job_service.queue_place(resources, view.job)
        return render_job(request, resources.settings, view.job, view.outputs, queue)

    @post("/{job_id:str}/cancel", status_code=200, summary="Cancel a queued or running job")
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        job_id: str,
        key: VirtualKey,
        resources: Resources,
    ) -> JobObject:
        view = await job_service.cancel(resources, key.id, job_id)
        return render_job(request, resources.settings, view.job, view.outputs)

    @delete("/{job_id:str}", status_code=200, summary="Delete a job and its media")
    async def delete_job(self, job_id: str, key: VirtualKey, resources: Resources) -> JobDeleted:
        job = await job_service.delete(resources, key.id, job_id)
        return JobDeleted(id=job.id)
