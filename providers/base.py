"""The Provider protocol, its request/result types and the provider error tree.

    ProviderError                    code, message, retryable
     ├── ProviderRetryableError      worth another attempt (connection, 429, 5xx)
     │    └── ProviderTimeoutError   the provider did not finish in time
     └── ProviderRejectedError       retrying cannot help
          ├── ContentPolicyError     the prompt or output was refused
          ├── ProviderInvalidRequestError
          ├── ProviderAuthError      our upstream credentials were refused
          └── ProviderQuotaError     our upstream account has used up its quota or balance

Providers say whether an error is retryable; the worker decides what a retry means.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class MediaType(StrEnum):
    """What a model makes; a job's `type`."""

    IMAGE = "image"
    VIDEO = "video"
    SPEECH = "speech"


MEDIA_TYPES: tuple[MediaType, ...] = tuple(MediaType)

ProgressCallback = Callable[[int], Awaitable[None]]
"""Called with a percentage (0-100) as the provider advances."""


class RunHooks(Protocol):
    """What a provider may tell the worker while it runs."""

    async def progress(self, percent: int) -> None:
        """The job advanced to `percent` (0-100)."""
        ...

    async def task_started(self, task_id: str | None) -> None:
        """An upstream task exists (or, with None, no longer does). The worker saves the id before
        the provider waits on it, so a restarted worker resumes polling the same task instead of
        paying for a second one."""
        ...


class ProviderError(Exception):
    """`message` is for operators (logs): it may quote the upstream's own text, which can name
    our account, key suffix or organisation. `public` is what a tenant is told: the class's
    generic sentence unless the provider wrote one of its own with nothing upstream in it."""

    code = "provider_error"
    retryable = False
    generic = "The provider failed to produce the output."

    def __init__(
        self, message: str, *, retry_after: float | None = None, public: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.public = public or self.generic


class ProviderRetryableError(ProviderError):
    code = "provider_unavailable"
    retryable = True
    generic = "The provider was unavailable or failed, and kept failing when retried."


class ProviderTimeoutError(ProviderRetryableError):
    code = "timeout"
    generic = "The provider did not finish in time."


class ProviderRejectedError(ProviderError):
    code = "invalid_request"
    generic = "The provider refused the request."


class ContentPolicyError(ProviderRejectedError):
    code = "content_policy_violation"
    generic = "The provider refused the request under its content policy."


class ProviderInvalidRequestError(ProviderRejectedError):
    code = "invalid_request"
    generic = "The provider refused the request's parameters."


class ProviderAuthError(ProviderRejectedError):
    code = "provider_auth_failed"
    generic = "The provider refused this deployment's credentials; tell its operator."


class ProviderQuotaError(ProviderRejectedError):
    code = "provider_quota_exceeded"
    generic = "The provider account's quota is used up; tell this deployment's operator."


MAX_INPUT_PIXELS = 40_000_000
"""Largest input image we decode (e.g. 8000x5000). A few kilobytes of PNG or WebP can declare
170 megapixels and cost most of a gigabyte to decode: such an input is refused from its header,
before any pixel is decoded."""


def check_input_image(data: bytes) -> tuple[int, int]:
    """The image's (width, height), read from its header alone; ProviderInvalidRequestError when
    it cannot be read or is larger than MAX_INPUT_PIXELS."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns of what we are about to refuse anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:  # reads the header, decodes nothing
                width, height = opened.size
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        message = "The input image could not be read."
        raise ProviderInvalidRequestError(message, public=message) from exc
    if width * height > MAX_INPUT_PIXELS:
        message = (
            f"The input image is {width}x{height}, over {MAX_INPUT_PIXELS // 1_000_000} megapixels."
        )
        raise ProviderInvalidRequestError(message, public=message)
    return width, height


EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/ogg": "ogg",
    "audio/opus": "opus",
    "audio/flac": "flac",
    "audio/aac": "aac",
    "audio/pcm": "pcm",
}


def extension_for(content_type: str) -> str:
    return EXTENSIONS.get(content_type.split(";", 1)[0].strip().lower(), "bin")


def sniff_content_type(head: bytes) -> str | None:
    """The media type the first bytes announce, for outputs that arrive without one."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head.startswith((b"ID3", b"\xff\xfb", b"\xff\xf3")):
        return "audio/mpeg"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    return None


@dataclass(frozen=True, slots=True)
class InputFile:
    """An uploaded input (a reference image), read into memory: uploads are size-limited."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    job_id: str
    type: MediaType
    model: str
    """The provider's own model name."""
    params: Mapping[str, Any]
    """Validated input parameters (prompt, size, ...). Never log them."""
    task_id: str | None = None
    """The upstream task an earlier attempt started, to resume instead of starting another."""
    files: Mapping[str, InputFile] = field(default_factory=dict)
    """Input files by parameter name (`image`, `mask`, `input_reference`)."""
    priority: str = "normal"
    """The job's priority (`high`, `normal`, `low`), for upstreams with a queue of their own."""
    deadline_seconds: float | None = None
    """Seconds left before the job's time limit, for upstreams that take a deadline."""


@dataclass(frozen=True, slots=True)
class GeneratedMedia:
    """One output, streamed: `chunks` is consumed exactly once by the caller."""

    content_type: str
    extension: str
    chunks: AsyncIterator[bytes]


class Provider(Protocol):
    name: str

    def generate(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        """Yield each output as soon as it exists; raise ProviderError on failure."""
        ...

    async def cancel(self, task_id: str) -> None:
        """Ask the upstream to stop a task (best effort; a no-op where the API has no cancel)."""
        ...

    async def aclose(self) -> None: ...


async def prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`first`, then the rest of a stream whose first chunk was read to look at it."""
    if first:
        yield first
    async for chunk in rest:
        yield chunk


async def sniffed(media: GeneratedMedia) -> GeneratedMedia:
    """The output with the content type its first bytes announce, when they announce one:
    providers do not always say (or say right) what they send."""
    first = b""
    async for chunk in media.chunks:
        first = chunk
        break
    content_type = sniff_content_type(first[:16]) or media.content_type
    extension = (
        media.extension if content_type == media.content_type else extension_for(content_type)
    )
    return GeneratedMedia(content_type, extension, prepend(first, media.chunks))


async def iter_chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """Stream an in-memory blob in chunks."""
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]
