"""Log lines: one line per record whatever a client put in a path, no query string (signature) in
access-log lines, and no library logging tenants' URLs at INFO."""

from __future__ import annotations

import logging

from app.platform.logs import QUIET_LOGGERS, SafeLines, quiet_libraries


def _record(name: str, msg: str, args: tuple[object, ...]) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_control_characters_cannot_forge_a_line() -> None:
    record = _record("mediagate.api", "api.unavailable path=%s", ("/v1/jobs/a\r\nINFO forged",))
    assert SafeLines().filter(record)
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message
    assert message == "api.unavailable path=/v1/jobs/a\\x0d\\x0aINFO forged"


def test_access_log_lines_lose_their_query_string() -> None:
    record = _record(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/v1/media/med_1?exp=1&sig=abc", "1.1", 200),
    )
    SafeLines().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /v1/media/med_1 HTTP/1.1" 200'


def test_httpx_does_not_log_urls_at_info() -> None:
    saved = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    try:
        logging.getLogger("httpx").setLevel(logging.DEBUG)
        quiet_libraries()
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
