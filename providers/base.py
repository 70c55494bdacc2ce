"""The Provider protocol, its request/result types and the provider error tree.

    ProviderError                    code, message, retryable
     ├── ProviderRetryableError      worth another attempt (connection, 429, 5xx)
     │    └── ProviderTimeoutError   the provider did not finish in time
     └── ProviderRejectedError       retrying cannot help
          ├── ContentPolicyError     the prompt or output was refused
          ├── ProviderInvalidRequestError
          └── ProviderAuthError      our upstream credentials were refused

Providers say whether an error is retryable; the worker decides what a retry means.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

MediaType = Literal["image", "video", "speech"]
MEDIA_TYPES: tuple[MediaType, ...] = ("image", "video", "speech")

ProgressCallback = Callable[[int], Awaitable[None]]
"""Called with a percentage (0-100) as the provider advances."""


class ProviderError(Exception):
    code = "provider_error"
    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ProviderRetryableError(ProviderError):
    code = "provider_unavailable"
    retryable = True


class ProviderTimeoutError(ProviderRetryableError):
    code = "timeout"


class ProviderRejectedError(ProviderError):
    code = "invalid_request"


class ContentPolicyError(ProviderRejectedError):
    code = "content_policy_violation"


class ProviderInvalidRequestError(ProviderRejectedError):
    code = "invalid_request"


class ProviderAuthError(ProviderRejectedError):
    code = "provider_auth_failed"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    job_id: str
    type: MediaType
    model: str
    """The provider's own model name."""
    params: Mapping[str, Any]
    """Validated input parameters (prompt, size, ...). Never log them."""


@dataclass(frozen=True, slots=True)
class GeneratedMedia:
    """One output, streamed: `chunks` is consumed exactly once by the caller."""

    content_type: str
    extension: str
    chunks: AsyncIterator[bytes]


class Provider(Protocol):
    name: str

    def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> AsyncIterator[GeneratedMedia]:
        """Yield each output as soon as it exists; raise ProviderError on failure."""
        ...

    async def aclose(self) -> None: ...


async def iter_chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """Stream an in-memory blob in chunks."""
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]
