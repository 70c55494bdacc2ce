"""The names objects are stored under, made and read in this one place:
`{key}/{job}/{attempt}-{random}/{index}[.{variant}].{ext}` for a job's outputs (every write has
an object of its own), `{key}/inputs/{media}.{ext}` for uploads; objects written before attempts
were in the name have none (`{key}/{job}/{index}.{ext}`)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from app.platform.vocabulary import Variant


def output_key(
    key_id: str,
    job_id: str,
    attempt: int,
    index: int,
    extension: str,
    variant: Variant = Variant.OUTPUT,
) -> str:
    """A new object for an attempt's output: a stale attempt (its worker partitioned past its
    lease) can never overwrite or delete what the attempt that took over wrote (nor a write of
    its own that a row points at)."""
    suffix = "" if variant == Variant.OUTPUT else f".{variant}"
    return f"{key_id}/{job_id}/{attempt}-{secrets.token_hex(4)}/{index}{suffix}.{extension}"


def input_key(key_id: str, media_id: str, extension: str) -> str:
    return f"{key_id}/inputs/{media_id}.{extension}"


@dataclass(frozen=True, slots=True)
class StoredName:
    """A storage key, read: whose object it is and which attempt wrote it."""

    key_id: str
    job_id: str | None
    """None for an upload."""
    attempt: int | None
    """None for an upload, or an output written before attempts were in the name."""
    file: str
    """The last part: `{index}[.{variant}].{ext}`, or an upload's `{media}.{ext}`."""


def parse(storage_key: str) -> StoredName:
    parts = storage_key.split("/")
    if len(parts) == 3 and parts[1] == "inputs":
        return StoredName(parts[0], None, None, parts[2])
    attempt = parts[2].split("-", 1)[0] if len(parts) == 4 else ""
    return StoredName(parts[0], parts[1], int(attempt) if attempt.isdigit() else None, parts[-1])


def download_name(storage_key: str) -> str:
    """An output downloads as `{job}-{index}.{ext}` (whichever attempt wrote it), an input as
    its id."""
    name = parse(storage_key)
    return name.file if name.job_id is None else f"{name.job_id}-{name.file}"


def job_prefix(key_id: str, job_id: str) -> str:
    """Every object of the job's outputs is named under this."""
    return f"{key_id}/{job_id}/"
