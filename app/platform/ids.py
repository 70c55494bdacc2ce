"""Identifiers: time-ordered resource ids (newest sort last) and virtual API keys."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _encode_time(ms: int) -> str:
    out = []
    for _ in range(10):
        ms, rem = divmod(ms, 32)
        out.append(_CROCKFORD[rem])
    return "".join(reversed(out))


_FROM_BASE32 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


def new_id(prefix: str) -> str:
    """`{prefix}_` + 10 chars of millisecond time + 16 random chars (80 bits): sortable by
    creation."""
    rand = base64.b32encode(secrets.token_bytes(10)).decode().translate(_FROM_BASE32)
    return f"{prefix}_{_encode_time(time.time_ns() // 1_000_000)}{rand}"


def new_api_key() -> str:
    """`mg_` + 43 url-safe random characters (256 bits)."""
    return "mg_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
