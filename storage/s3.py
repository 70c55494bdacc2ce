"""S3-compatible storage (AWS S3, MinIO, R2, moto) through aiobotocore.

Large objects are streamed with multipart upload so memory stays bounded by one part; a failed
upload is aborted so no partial object is ever visible.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from storage.base import CHUNK_SIZE, DELETE_BATCH, ObjectInfo, StorageError, StorageNotFoundError

PART_SIZE = 8 * 1024 * 1024  # S3 needs >= 5 MiB for every part but the last


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    public_base_url: str | None = None
    path_style: bool = True


def _is_not_found(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def _content_disposition(filename: str | None) -> str | None:
    if filename is None:
        return None
    return f"inline; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}"


class S3Store:
    """A MediaStore over one bucket. Build it with `open_s3_store()`; close it with `close()`."""

    def __init__(self, client: Any, config: S3Config, stack: contextlib.AsyncExitStack) -> None:
        self._client = client
        self._config = config
        self._bucket = config.bucket
        self._stack = stack

    async def ensure_bucket(self) -> None:
        """Create the bucket if missing: for development and tests only."""
        try:
            await self._client.head_bucket(Bucket=self._bucket)
        except ClientError:
            await self._client.create_bucket(Bucket=self._bucket)

    async def put(
        self,
        key: str,
        data: AsyncIterable[bytes],
        *,
        content_type: str,
        filename: str | None = None,
    ) -> int:
        extra: dict[str, str] = {"ContentType": content_type}
        if (disposition := _content_disposition(filename)) is not None:
            extra["ContentDisposition"] = disposition
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        total = 0
        try:
            async for chunk in data:
                buffer += chunk
                total += len(chunk)
                if len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        created = await self._client.create_multipart_upload(
                            Bucket=self._bucket, Key=key, **extra
                        )
                        upload_id = created["UploadId"]
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, buffer))
                    buffer = bytearray()
            if upload_id is None:
                await self._client.put_object(
                    Bucket=self._bucket, Key=key, Body=bytes(buffer), **extra
                )
                return total
            if buffer:
                parts.append(await self._upload_part(key, upload_id, len(parts) + 1, buffer))
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return total
        except BaseException as exc:
            if upload_id is not None:
                with contextlib.suppress(ClientError, BotoCoreError):
                    await self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=key, UploadId=upload_id
                    )
            if isinstance(exc, ClientError | BotoCoreError):
                raise StorageError(f"upload of {key!r} failed: {exc}") from exc
            raise

    async def _upload_part(
        self, key: str, upload_id: str, number: int, body: bytearray
    ) -> dict[str, Any]:
        resp = await self._client.upload_part(
            Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(body)
        )
        return {"ETag": resp["ETag"], "PartNumber": number}

    async def iter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if start or end is not None:
            params["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            resp = await self._client.get_object(**params)
        except ClientError as exc:
            if _is_not_found(exc):
                raise StorageNotFoundError(f"no object {key!r}") from exc
            raise StorageError(f"download of {key!r} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"download of {key!r} failed: {exc}") from exc
        async with resp["Body"] as body:
            while chunk := await body.read(CHUNK_SIZE):
                yield chunk

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            resp = await self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise StorageError(f"head of {key!r} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"head of {key!r} failed: {exc}") from exc
        return ObjectInfo(key, int(resp["ContentLength"]), str(resp.get("ContentType", "")))

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"delete of {key!r} failed: {exc}") from exc

    async def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    modified = item.get("LastModified")
                    yield ObjectInfo(
                        str(item["Key"]),
                        int(item["Size"]),
                        "",
                        modified.timestamp() if modified is not None else 0.0,
                    )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"listing {prefix!r} failed: {exc}") from exc

    async def delete_many(self, keys: list[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), DELETE_BATCH):
            deleted += await self._delete_batch(keys[start : start + DELETE_BATCH])
        return deleted

    async def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        batch: list[str] = []
        async for info in self.list_objects(prefix):
            batch.append(info.key)
            if len(batch) == DELETE_BATCH:
                deleted += await self._delete_batch(batch)
                batch = []
        if batch:
            deleted += await self._delete_batch(batch)
        return deleted

    async def _delete_batch(self, keys: list[str]) -> int:
        try:
            resp = await self._client.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"deleting {len(keys)} objects failed: {exc}") from exc
        if errors := resp.get("Errors"):
            raise StorageError(f"{len(errors)} of {len(keys)} deletes failed")
        return len(keys)

    async def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        if self._config.public_base_url:
            return f"{self._config.public_base_url.rstrip('/')}/{quote(key)}"
        params: dict[str, str] = {"Bucket": self._bucket, "Key": key}
        if (disposition := _content_disposition(filename)) is not None:
            params["ResponseContentDisposition"] = disposition
        url: str = await self._client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_in
        )
        return url

    async def ping(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self._bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"bucket {self._bucket!r} does not answer: {exc}") from exc

    async def close(self) -> None:
        await self._stack.aclose()


async def open_s3_store(config: S3Config) -> S3Store:
    stack = contextlib.AsyncExitStack()
    session = get_session()
    client = await stack.enter_async_context(
        session.create_client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            aws_access_key_id=config.access_key,
            aws_secret_access_key=config.secret_key,
            config=AioConfig(
                signature_version="s3v4",
                s3={"addressing_style": "path" if config.path_style else "auto"},
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )
    )
    return S3Store(client, config, stack)
