"""Which database errors are outages (retry shortly) and which are the statement's fault."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from app.platform.errors import is_data_error, unavailable_part


class _DriverError(Exception):
    """What SQLAlchemy's asyncpg adapter raises: a DB-API error carrying the SQLSTATE."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("driver error")
        self.sqlstate = sqlstate


def _wrapped(sqlstate: str | None, cls: type[DBAPIError] = DBAPIError) -> DBAPIError:
    return cls("SELECT 1", {}, _DriverError(sqlstate))


@pytest.mark.parametrize(
    ("sqlstate", "part"),
    [
        ("22021", None),  # invalid byte sequence (a NUL in text)
        ("22003", None),  # numeric value out of range
        ("42P01", None),  # undefined table: a bug, not an outage
        ("23505", None),
        ("57P01", "database"),  # admin shutdown
        ("57P03", "database"),  # cannot connect now (starting up)
        ("08006", "database"),  # connection failure
        ("53300", "database"),  # too many connections
        ("40001", "database"),  # serialization failure: retrying may succeed
        (None, "database"),  # a connection lost with no SQLSTATE at all
    ],
)
def test_outages_by_sqlstate(sqlstate: str | None, part: str | None) -> None:
    assert unavailable_part(_wrapped(sqlstate)) == part


def test_data_errors_and_driver_classes() -> None:
    assert is_data_error(_wrapped("22021"))
    assert not is_data_error(_wrapped("57P01"))
    assert unavailable_part(_wrapped(None, IntegrityError)) is None
    assert unavailable_part(_wrapped(None, OperationalError)) == "database"
    assert unavailable_part(_wrapped("22P02", OperationalError)) is None


def test_translated_names_the_outage_or_the_request() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from app.platform.errors import InvalidRequestError, UnavailableError, translated

    down = translated(_wrapped("57P01"))
    assert isinstance(down, UnavailableError) and down.part == "database"
    assert down.retry_after == 5 and "The database is unavailable" in down.message
    redis = translated(RedisConnectionError("gone"))
    assert isinstance(redis, UnavailableError) and redis.part == "redis"
    assert isinstance(translated(_wrapped("22021")), InvalidRequestError)  # a NUL in text
    assert translated(_wrapped("23505", IntegrityError)) is None  # a bug of ours
    assert translated(ValueError("x")) is None
