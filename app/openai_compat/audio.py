"""OpenAI-compatible speech: `POST /v1/audio/speech` answers with the audio itself, once the job
ends (or 202 with the job, past `sync_wait_seconds` or with `Prefer: respond-async`)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.response import Stream
from pydantic import Field

from app.http.bodies import prefers_async, read_body
from app.http.dependencies import event_hub, waiting
from app.http.errors import job_failure_response
from app.http.openapi import AUDIO
from app.http.schemas import RequestModel
from app.jobs import service as job_service
from app.jobs.schemas import ACCEPTED
from app.keys.dependencies import KEY_DEPENDENCY
from app.media.service import open_object, outputs_for
from app.media.storage_keys import download_name
from app.openai_compat.common import accepted, submit_request
from app.platform.events import EventHub
from app.platform.resources import Resources
from app.platform.tables import VirtualKey
from app.platform.vocabulary import JobStatus


class SpeechRequest(RequestModel):
    input: str
    model: str | None = None
    voice: str | None = None
    response_format: str | None = None
    speed: float | None = None
    instructions: str | None = None
    stream_format: str | None = Field(default=None, pattern="^audio$")


@post(
    "/v1/audio/speech",
    dependencies=KEY_DEPENDENCY,
    tags=["openai"],
    summary="Create speech (OpenAI-compatible)",
    status_code=200,
    responses={200: AUDIO, **ACCEPTED},
)
async def create_speech(
    request: Request[Any, Any, Any],
    key: VirtualKey,
    resources: Resources,
) -> Response[bytes]:
    """The audio itself, as `audio/mpeg`, `audio/wav`, `audio/ogg` (opus) or `audio/flac`."""
    return await _speak(request, key, resources, event_hub(request))


async def _speak(
    request: Request[Any, Any, Any], key: VirtualKey, resources: Resources, hub: EventHub
) -> Response[Any]:
    request_body = await read_body(request, SpeechRequest, resources.settings.max_upload_bytes)
    body = request_body.fields
    params: dict[str, Any] = {"input": body.input}
    for ours, theirs in (
        ("voice", body.voice),
        ("format", body.response_format),
        ("speed", body.speed),
        ("instructions", body.instructions),
    ):
        if theirs is not None:
            params[ours] = theirs
    model = body.model or resources.settings.default_speech_model
    names = {"format": "response_format"}
    if prefers_async(request):
        job = await submit_request(
            resources, key, "speech", model, params, request_body, openai_names=names
        )
        return accepted(request, resources, job)
    with waiting(request, key):  # before the submit: a refused request changes nothing
        job = await submit_request(
            resources, key, "speech", model, params, request_body, openai_names=names
        )
        job = await job_service.wait(resources, hub, job.id, resources.settings.sync_wait_seconds)
    if job.status in (JobStatus.FAILED, JobStatus.CANCELED):
        return job_failure_response(job)
    if job.status != JobStatus.SUCCEEDED:
        return accepted(request, resources, job)
    media = (await outputs_for(resources, job.id))[0]
    return Stream(
        await open_object(resources.store, media),
        media_type=media.content_type,
        headers={
            "Content-Length": str(media.bytes),
            "Content-Disposition": f'inline; filename="{download_name(media.storage_key)}"',
        },
    )
