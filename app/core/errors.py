"""The core error tree; only app/api turns these into HTTP statuses.

MediagateError                 code, message, param
 ├── InvalidRequestError       the request is malformed or names something unknown
 │    └── ModelNotFoundError
 ├── AuthenticationError       no key, or an unknown or revoked one
 ├── NotFoundError             missing, or another key's (never told apart)
 ├── ConflictError             the resource's state does not allow this
 ├── GoneError                 it existed, and has expired
 ├── QuotaExceededError        the key is at a storage or concurrency limit
 └── UnavailableError          a dependency (database, Redis, storage) does not answer
"""

from __future__ import annotations


class MediagateError(Exception):
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequestError(MediagateError):
    code = "invalid_request"


class ModelNotFoundError(InvalidRequestError):
    code = "model_not_found"


class AuthenticationError(MediagateError):
    code = "invalid_api_key"


class NotFoundError(MediagateError):
    code = "not_found"


class ConflictError(MediagateError):
    code = "conflict"


class GoneError(MediagateError):
    code = "gone"


class QuotaExceededError(MediagateError):
    code = "storage_quota_exceeded"


class UnavailableError(MediagateError):
    code = "service_unavailable"
