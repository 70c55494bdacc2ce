"""The shapes of OpenAI's own API that the compatible endpoints answer with (images, videos)."""

from __future__ import annotations

from typing import Literal

from app.http.schemas import ListModel, ResponseModel

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]
"""OpenAI's video statuses (a canceled job is `failed`, with the error code `canceled`)."""


class ImageUrl(ResponseModel):
    url: str
    """mediagate's own signed link, never the provider's."""


class ImageBase64(ResponseModel):
    b64_json: str


class ImagesResponse(ResponseModel):
    created: int
    data: list[ImageUrl | ImageBase64]


class VideoError(ResponseModel):
    code: str
    message: str


class VideoObject(ResponseModel):
    id: str
    object: Literal["video"] = "video"
    model: str
    status: VideoStatus
    progress: int
    created_at: int | None
    completed_at: int | None
    expires_at: int | None
    seconds: str
    size: str
    prompt: str | None
    remixed_from_video_id: str | None
    error: VideoError | None


class VideoList(ListModel):
    data: list[VideoObject]
    has_more: bool
    first_id: str | None
    last_id: str | None


class VideoDeleted(ResponseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True
