"""The shapes of /v1/media and of storage usage (/v1/usage, /admin/usage)."""

from __future__ import annotations

from typing import Literal

from app.http.schemas import ListModel, ResponseModel
from app.platform.tables import MediaObject, iso
from app.platform.vocabulary import Variant


class MediaFile(ResponseModel):
    id: str
    object: Literal["media"] = "media"
    kind: str
    """`image`, `video`, `audio` or `other`, judged by the content type."""
    variant: Variant
    job_id: str | None
    content_type: str
    bytes: int
    sha256: str
    created_at: str
    expires_at: str | None
    url: str
    """A signed link that works for `MEDIAGATE_MEDIA_URL_TTL_SECONDS`."""

    @classmethod
    def of(cls, media: MediaObject, url: str) -> MediaFile:
        return MediaFile(
            id=media.id,
            kind=media.kind,
            variant=media.variant,
            job_id=media.job_id,
            content_type=media.content_type,
            bytes=media.bytes,
            sha256=media.sha256,
            created_at=iso(media.created_at) or "",
            expires_at=iso(media.expires_at),
            url=url,
        )


class MediaDeleted(ResponseModel):
    id: str
    object: Literal["media.deleted"] = "media.deleted"
    deleted: bool = True


class KindUsage(ResponseModel):
    bytes: int
    objects: int
    bytes_written: int
    objects_written: int
    bytes_deleted: int
    objects_deleted: int


class Quota(ResponseModel):
    max_bytes: int | None
    max_objects: int | None
    max_concurrent_jobs: int | None
    retention_days: int | None
    requests_per_minute: int | None


class Spend(ResponseModel):
    """What the key's jobs were charged (USD, at list prices), and its monthly budgets."""

    currency: Literal["usd"] = "usd"
    today: float
    this_month: float
    lifetime: float
    max_spend_per_month: float | None
    soft_spend_per_month: float | None


class Usage(ResponseModel):
    object: Literal["usage"] = "usage"
    key_id: str
    bytes: int
    objects: int
    by_type: dict[str, KindUsage]
    """Per kind of media: `image`, `video`, `audio`, `other`."""
    quota: Quota
    spend: Spend


class UsageList(ListModel):
    data: list[Usage]
