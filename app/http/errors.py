"""Every 4xx/5xx leaves as OpenAI's error shape: {"error": {"message","type","code","param"}}.
This is the only module that knows which status a core error deserves."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.types import ExceptionHandlersMap

from app.platform.errors import (
    OUTAGE_ERRORS,
    AuthenticationError,
    ConflictError,
    GoneError,
    InvalidRequestError,
    MediagateError,
    NotFoundError,
    QuotaExceededError,
    UnavailableError,
    sqlstate,
    translated,
    unavailable_part,
)
from app.platform.metrics import REFUSALS
from app.platform.tables import Job
from app.platform.vocabulary import ErrorCode, JobStatus

log = logging.getLogger("mediagate.api")

STATUS_BY_ERROR: tuple[tuple[type[MediagateError], int], ...] = (
    (InvalidRequestError, 400),
    (AuthenticationError, 401),
    (NotFoundError, 404),
    (ConflictError, 409),
    (GoneError, 410),
    (QuotaExceededError, 429),
    (UnavailableError, 503),
)

TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    410: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

CODE_BY_STATUS = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
}


STATUS_BY_JOB_ERROR: dict[str, int] = {
    ErrorCode.CONTENT_POLICY_VIOLATION: 400,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.PROVIDER_AUTH_FAILED: 502,
    ErrorCode.PROVIDER_QUOTA_EXCEEDED: 502,
    ErrorCode.PROVIDER_UNAVAILABLE: 502,
    ErrorCode.PROVIDER_ERROR: 502,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.JOB_CANCELED: 409,
}
"""A job that ended without output -> the status the synchronous (OpenAI-compatible) endpoints
answer with; any other code is a 500."""


def error_body(status: int, message: str, code: str | None, param: str | None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": TYPE_BY_STATUS.get(
                status, "server_error" if status >= 500 else "invalid_request_error"
            ),
            "code": code,
            "param": param,
        }
    }


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    return Response(
        content=error_body(status, message, code or CODE_BY_STATUS.get(status), param),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def handle_core_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    assert isinstance(exc, MediagateError)
    status = next((s for cls, s in STATUS_BY_ERROR if isinstance(exc, cls)), 500)
    if isinstance(exc, QuotaExceededError):
        REFUSALS.labels(exc.code).inc()
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return error_response(status, exc.message, exc.code, exc.param, headers or None)


def _validation_param(exc: ValidationException) -> tuple[str | None, str]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict):
            key = item.get("key")
            message = str(item.get("message", exc.detail))
            if key:
                return str(key), f"Invalid value for {key!r}: {message}"
            return None, message
    return None, str(exc.detail)


def handle_http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if isinstance(exc.__cause__, SerializationException):
        return error_response(400, "The request body is not valid JSON.", "invalid_json")
    if isinstance(exc, ValidationException):
        param, message = _validation_param(exc)
        return error_response(400, message, "invalid_request", param)
    if status == 404:
        return error_response(404, f"Unknown path {request.url.path!r}.", "not_found")
    if status == 405:
        return error_response(405, f"Method {request.method} is not allowed here.")
    if status == 413:
        return error_response(413, "The request body is larger than this server accepts.")
    if status >= 500:
        log.error("api.http_error status=%d path=%s", status, request.url.path)
        return error_response(status, "The server failed to handle this request.", "internal_error")
    return error_response(status, str(exc.detail))


def handle_backend_error(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, Any]]:
    """A lower library's error (database, Redis, storage), translated once (`errors.translated`)."""
    ours = translated(exc)
    if ours is None:  # e.g. an IntegrityError: a bug of ours, not an outage
        return handle_unexpected(request, exc)
    if isinstance(ours, UnavailableError):
        log.warning(
            "api.unavailable part=%s path=%s error=%s",
            ours.part,
            request.url.path,
            type(exc).__name__,
        )
    else:
        # A value the edge should have refused: the client's to fix, so not a 5xx; logged so
        # that the missing edge check gets added.
        log.warning("api.data_error path=%s sqlstate=%s", request.url.path, sqlstate(exc))
    return handle_core_error(request, ours)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if unavailable_part(exc) is not None:  # a bare ConnectionError from some driver
        return handle_backend_error(request, exc)
    # Type only: an exception's message may quote a prompt.
    log.error(
        "api.unhandled path=%s error=%s",
        request.url.path,
        type(exc).__name__,
        exc_info=(type(exc), exc, exc.__traceback__) if log.isEnabledFor(logging.DEBUG) else None,
    )
    return error_response(500, "The server failed to handle this request.", "internal_error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    MediagateError: handle_core_error,
    HTTPException: handle_http_error,
    **dict.fromkeys(OUTAGE_ERRORS, handle_backend_error),
    Exception: handle_unexpected,
}


def job_failure_response(job: Job) -> Response[dict[str, Any]]:
    """A job that ended without output, in OpenAI's error shape. `x-should-retry: false` tells
    OpenAI's SDKs not to submit again: mediagate already retried upstream."""
    code: str
    if job.status == JobStatus.CANCELED:
        code, message = ErrorCode.JOB_CANCELED, f"Job {job.id} was canceled."
    else:
        code = job.error_code or ErrorCode.INTERNAL_ERROR
        message = f"{job.error_message or 'The job failed.'} (job {job.id})"
    status = STATUS_BY_JOB_ERROR.get(code, 500)
    return error_response(status, message, code, headers={"x-should-retry": "false"})
