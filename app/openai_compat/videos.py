"""OpenAI-compatible videos: create (JSON or multipart with `input_reference`), retrieve, list,
delete (with its media) and download content (`variant=video|thumbnail`). A video is a job: the
same id answers at /v1/jobs/{id}. Responses carry `openai-poll-after-ms`, which OpenAI's SDK
`create_and_poll` reads to pace itself."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter
from litestar.response import Stream
from pydantic import Field

from app.http.bodies import read_body
from app.http.openapi import BINARY
from app.http.schemas import RequestModel
from app.jobs import service as job_service
from app.keys.dependencies import KEY_DEPENDENCY
from app.media.service import open_object, outputs_for
from app.media.storage_keys import download_name
from app.openai_compat.common import submit_request
from app.openai_compat.schemas import (
    VideoDeleted,
    VideoError,
    VideoList,
    VideoObject,
    VideoStatus,
)
from app.platform.errors import ConflictError, InvalidRequestError, NotFoundError
from app.platform.resources import Resources
from app.platform.tables import Job, VirtualKey, as_utc
from app.platform.vocabulary import ErrorCode, JobStatus, Variant
from providers.base import MediaType

POLL_AFTER_MS = "1000"
STATUS: dict[JobStatus, VideoStatus] = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "in_progress",
    JobStatus.SUCCEEDED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "failed",
}


class VideoRequest(RequestModel):
    prompt: str
    model: str | None = None
    seconds: int | None = Field(default=None, ge=1, le=600)
    size: str | None = None


def _unix(job_time: Any) -> int | None:
    return None if job_time is None else int(as_utc(job_time).timestamp())


def video_object(job: Job) -> VideoObject:
    error = None
    if job.status == JobStatus.CANCELED:
        error = VideoError(code=ErrorCode.CANCELED, message="The video was canceled.")
    elif job.error_code is not None:
        error = VideoError(code=job.error_code, message=job.error_message or "")
    return VideoObject(
        id=job.id,
        model=job.model,
        status=STATUS[job.status],
        progress=job.progress,
        created_at=_unix(job.created_at),
        completed_at=_unix(job.finished_at) if job.status == JobStatus.SUCCEEDED else None,
        expires_at=None,  # mediagate keeps outputs until they are deleted
        seconds=str(job.input.get("seconds", "")),
        size=str(job.input.get("size", "")),
        prompt=job.input.get("prompt"),
        remixed_from_video_id=None,
        error=error,
    )


def _video(job: Job) -> Response[VideoObject]:
    return Response(video_object(job), headers={"openai-poll-after-ms": POLL_AFTER_MS})


class VideoController(Controller):
    path = "/v1/videos"
    tags = ["openai"]
    dependencies = KEY_DEPENDENCY

    @post("/", status_code=200, summary="Create a video (OpenAI-compatible)")
    async def create(
        self,
        request: Request[Any, Any, Any],
        key: VirtualKey,
        resources: Resources,
    ) -> Response[VideoObject]:
        request_body = await read_body(request, VideoRequest, resources.settings.max_upload_bytes)
        body = request_body.fields
        params: dict[str, Any] = {"prompt": body.prompt}
        if body.seconds is not None:
            params["seconds"] = body.seconds
        if body.size is not None:
            params["size"] = body.size
        model = body.model or resources.settings.default_video_model
        job = await submit_request(
            resources,
            key,
            MediaType.VIDEO,
            model,
            params,
            request_body,
            file_params=("input_reference",),
        )
        return _video(job)

    @get("/", summary="List videos")
    async def list_videos(
        self,
        key: VirtualKey,
        resources: Resources,
        after: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        order: Literal["asc", "desc"] = "desc",
    ) -> VideoList:
        found = await job_service.page(
            resources,
            key.id,
            media_type=MediaType.VIDEO,
            limit=limit,
            after=after,
            oldest_first=order == "asc",
            with_outputs=False,
        )
        return VideoList(
            data=[video_object(job) for job in found.jobs],
            has_more=found.has_more,
            first_id=found.jobs[0].id if found.jobs else None,
            last_id=found.jobs[-1].id if found.jobs else None,
        )

    @get("/{video_id:str}", summary="Get a video")
    async def retrieve(
        self, video_id: str, key: VirtualKey, resources: Resources
    ) -> Response[VideoObject]:
        return _video((await job_service.read(resources, key.id, video_id, MediaType.VIDEO)).job)

    @delete("/{video_id:str}", status_code=200, summary="Delete a video and its media")
    async def delete_video(
        self, video_id: str, key: VirtualKey, resources: Resources
    ) -> VideoDeleted:
        job = await job_service.delete(resources, key.id, video_id, MediaType.VIDEO)
        return VideoDeleted(id=job.id)

    @get(
        "/{video_id:str}/content",
        summary="Download a video's content",
        responses={200: BINARY},
    )
    async def content(
        self,
        video_id: str,
        key: VirtualKey,
        resources: Resources,
        variant: str = "video",
    ) -> Stream:
        if variant not in ("video", "thumbnail"):
            raise InvalidRequestError(
                "variant must be video or thumbnail (spritesheets are not made here)",
                param="variant",
            )
        job = (await job_service.read(resources, key.id, video_id, MediaType.VIDEO)).job
        if job.status != JobStatus.SUCCEEDED:
            raise ConflictError(
                f"Video {video_id!r} is {STATUS[job.status]}; its content exists once completed.",
                code=ErrorCode.VIDEO_NOT_READY,
            )
        stored = Variant.OUTPUT if variant == "video" else Variant.THUMBNAIL
        rows = await outputs_for(resources, job.id, stored)
        if not rows:
            raise NotFoundError(f"Video {video_id!r} has no {variant}.", param="variant")
        media = rows[0]
        return Stream(
            await open_object(resources.store, media),
            media_type=media.content_type,
            headers={
                "Content-Length": str(media.bytes),
                "Content-Disposition": f'attachment; filename="{download_name(media.storage_key)}"',
                "ETag": f'"{media.sha256}"',
            },
        )
