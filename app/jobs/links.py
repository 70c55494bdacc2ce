"""A job's links, as every job object carries them (`urls`: get, cancel, stream), and the signed
stream link: `/v1/jobs/{id}/events?exp=...&sig=...`, which opens that one job's event stream
without an Authorization header (what `new EventSource(...)` cannot send). It opens nothing else:
the signature covers the job id and the expiry only, under a purpose of its own (it is not a
media link); the job's key is checked on every use, so it stops working when the key is revoked
or deleted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from app.platform.settings import Settings

PURPOSE = "job-events"


def stream_signature(secret: bytes, job_id: str, expires: int) -> str:
    message = f"{PURPOSE}:{job_id}.{expires}".encode()
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def stream_url(
    base: str,
    settings: Settings,
    job_id: str,
    now: float | None = None,
    until: int | None = None,
) -> str:
    """A link to the job's event stream that works for `stream_link_seconds` from now, and no
    longer than `until` (the expiry of the link it is handed out through)."""
    expires = int(now if now is not None else time.time()) + settings.stream_link_seconds
    if until is not None:
        expires = min(expires, until)
    signature = stream_signature(settings.signing_secret, job_id, expires)
    return f"{base}/v1/jobs/{job_id}/events?exp={expires}&sig={signature}"


def job_urls(
    base: str, settings: Settings, job_id: str, until: int | None = None
) -> dict[str, str]:
    return {
        "get": f"{base}/v1/jobs/{job_id}",
        "cancel": f"{base}/v1/jobs/{job_id}/cancel",
        "stream": stream_url(base, settings, job_id, until=until),
    }


def verify_stream(secret: bytes, job_id: str, expires: Any, signature: str, now: float) -> bool:
    try:
        at = int(expires)
    except (TypeError, ValueError):
        return False
    if at < now:
        return False
    expected = stream_signature(secret, job_id, at).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass"))
