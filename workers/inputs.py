"""A job's inputs, as its attempt loads them: uploads (by media id) read from storage, https URLs
fetched with the SSRF checks of `tenant_urls`."""

from __future__ import annotations

from app.jobs.inputs import references
from app.media.storage_keys import download_name
from app.platform.errors import InvalidRequestError
from app.platform.resources import Resources
from app.platform.tables import Job, MediaObject
from app.platform.tenant_urls import fetch_input
from providers.base import InputFile
from storage.base import StorageError


class InputGone(Exception):
    """An input the job names is gone or cannot be fetched; the message says which and why."""


async def load_files(res: Resources, job: Job) -> dict[str, InputFile]:
    files: dict[str, InputFile] = {}
    for name, ref in references(job.input).items():
        if "url" in ref:
            try:
                files[name] = await fetch_input(res.tenant_http, res.settings, ref["url"], name)
            except InvalidRequestError as exc:
                raise InputGone(exc.message) from exc
            continue
        async with res.sessionmaker() as session:
            media = await session.get(MediaObject, ref["media_id"])
        if media is None or media.deleted_at is not None or media.key_id != job.key_id:
            raise InputGone(f"The input {name} was deleted.")
        try:
            data = b"".join([c async for c in res.store.iter_bytes(media.storage_key)])
        except StorageError as exc:
            raise InputGone(f"The input {name} could not be read.") from exc
        files[name] = InputFile(download_name(media.storage_key), media.content_type, data)
    return files
