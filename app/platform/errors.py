"""The error tree of the whole app; only the HTTP layer (app/http/errors.py) maps it to statuses.

MediagateError                 code, message, param
 ├── InvalidRequestError       the request is malformed or names something unknown
 │    └── ModelNotFoundError
 ├── AuthenticationError       no key, or an unknown or revoked one
 ├── NotFoundError             missing, or another key's (never told apart)
 ├── ConflictError             the resource's state does not allow this
 ├── GoneError                 it existed, and has expired
 ├── QuotaExceededError        the key is at a storage or concurrency limit
 └── UnavailableError          a dependency (database, Redis, storage) does not answer

Errors of the libraries beneath (SQLAlchemy and its drivers, redis, storage) are translated into
this tree by one function, `translated`, at the two edges that meet them: the HTTP error mapping
and the generation task (which retries the job later on an `UnavailableError`).
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from app.platform.vocabulary import ErrorCode
from storage.base import StorageError


class MediagateError(Exception):
    code: str = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        """Seconds after which trying again may succeed (a limit's window, a full queue)."""
        if code is not None:
            self.code = code


class InvalidRequestError(MediagateError):
    code: str = ErrorCode.INVALID_REQUEST


class ModelNotFoundError(InvalidRequestError):
    code: str = ErrorCode.MODEL_NOT_FOUND


class AuthenticationError(MediagateError):
    code: str = ErrorCode.INVALID_API_KEY


class NotFoundError(MediagateError):
    code: str = ErrorCode.NOT_FOUND


class ConflictError(MediagateError):
    code: str = ErrorCode.CONFLICT


class GoneError(MediagateError):
    code: str = ErrorCode.GONE


class QuotaExceededError(MediagateError):
    code: str = ErrorCode.STORAGE_QUOTA_EXCEEDED


class UnavailableError(MediagateError):
    code: str = ErrorCode.SERVICE_UNAVAILABLE

    def __init__(self, part: str) -> None:
        name = PART_NAMES.get(part, "A backend")
        super().__init__(
            f"{name} is unavailable; nothing was changed. Retry shortly.", retry_after=5
        )
        self.part = part
        """`redis`, `database`, `storage` or `backend`."""


PART_NAMES = {
    "redis": "The job queue (Redis)",
    "database": "The database",
    "storage": "Media storage",
}


NOT_OUTAGES = (IntegrityError, DataError, ProgrammingError, NotSupportedError)
"""Database errors that are the statement's fault, not the database being away."""

OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    DBAPIError,
    SQLAlchemyTimeoutError,
    StorageError,
    ConnectionError,
    TimeoutError,
)
"""What a backend that is down or unreachable may raise; `unavailable_part` has the last word
(an IntegrityError is a DBAPIError too, and no outage)."""


OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "54", "55", "57", "58", "XX"})
"""PostgreSQL error classes that say the server, not the statement, is the trouble: connection
exceptions, transaction rollbacks (serialization, deadlock), insufficient resources, program
limits, object in use, operator intervention (shutdown, cancel), system and internal errors.
Every other class (22 data, 23 integrity, 42 syntax or access, ...) is the statement's fault."""


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE a PostgreSQL driver attached to a database error, if any."""
    orig = getattr(exc, "orig", None)
    for source in (orig, getattr(orig, "__cause__", None)):
        code = getattr(source, "sqlstate", None) or getattr(source, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def is_statement_fault(exc: BaseException) -> bool:
    """A database error caused by the statement or its values (a NUL in a string, an integer
    out of range, a constraint): no retry will ever make it succeed."""
    if isinstance(exc, NOT_OUTAGES):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    code = sqlstate(exc)
    return code is not None and code[:2] not in OUTAGE_SQLSTATE_CLASSES


def is_data_error(exc: BaseException) -> bool:
    """A value the database cannot store or compare (SQLSTATE class 22)."""
    code = sqlstate(exc) if isinstance(exc, DBAPIError) else None
    return isinstance(exc, DataError) or (code is not None and code.startswith("22"))


def unavailable_part(exc: BaseException) -> str | None:
    """`redis`, `database`, `storage` or `backend` (a bare connection error under some driver)
    when `exc` says that part is down or unreachable; None for any other error."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return "redis"
    if isinstance(exc, SQLAlchemyTimeoutError):
        return "database"
    if isinstance(exc, DBAPIError) and is_statement_fault(exc):
        return None
    if isinstance(exc, OperationalError | InterfaceError):
        return "database"
    if isinstance(exc, DBAPIError):
        # A lost or refused connection, a server shutting down or starting up, a connection left
        # in a broken state by one of those: drivers report these in several ways.
        return "database"
    if isinstance(exc, StorageError):
        return "storage"
    if isinstance(exc, ConnectionError | TimeoutError):
        return "backend"
    return None


def translated(exc: BaseException) -> MediagateError | None:
    """The one translation of a lower library's error into ours, for the two edges that meet
    them (the HTTP error mapping and the worker's task): a backend that is down is an
    `UnavailableError` naming it; a value the database cannot store or compare is the request's
    fault (`InvalidRequestError`: the edge should have refused it); anything else is no error
    of ours to name (None: a bug)."""
    if isinstance(exc, MediagateError):
        return exc
    part = unavailable_part(exc)
    if part is not None:
        return UnavailableError(part)
    if is_data_error(exc):
        return InvalidRequestError("The request holds a value that cannot be stored or compared.")
    return None
