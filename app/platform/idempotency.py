"""What makes two requests the same: a client's `Idempotency-Key` and the fingerprint of the request
that carries it (its endpoint, its fields, its files' bytes). What a claim maps to is the jobs
domain's (`app.jobs.idempotency`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from app.platform.errors import InvalidRequestError
from app.platform.vocabulary import ErrorCode

HEADER = "Idempotency-Key"
MAX_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Claim:
    """An `Idempotency-Key` and the fingerprint of the request that carries it."""

    key: str
    fingerprint: str


def claim_of(
    header: str | None,
    method: str,
    path: str,
    fields: Mapping[str, Any],
    files: Mapping[str, bytes] | None = None,
) -> Claim | None:
    """The request's claim, if it sent the header. The fingerprint covers the endpoint, the
    fields (key order and JSON spacing do not matter) and the bytes of each file."""
    if header is None:
        return None
    value = header.strip()
    if not value or len(value) > MAX_LENGTH or not value.isprintable() or not value.isascii():
        raise InvalidRequestError(
            f"{HEADER} must be 1 to {MAX_LENGTH} printable ASCII characters",
            param=HEADER,
            code=ErrorCode.INVALID_IDEMPOTENCY_KEY,
        )
    digest = hashlib.sha256(f"{method.upper()} {path}\n".encode())
    digest.update(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS, default=str))
    for name, data in sorted((files or {}).items()):
        digest.update(f"\n{name}:".encode())
        digest.update(hashlib.sha256(data).digest())
    return Claim(value, digest.hexdigest())
