"""Logging set-up. Our own log lines carry ids, codes and timings only; this also keeps the
libraries beneath us from logging what we must never log (prompts, input text, media bytes),
whatever level an operator asks for."""

from __future__ import annotations

import logging

# Libraries that log request bodies, SQL parameters (job inputs) or every chunk sent when at DEBUG
# (or INFO, for SQLAlchemy's engine): held at these levels even when the rest is more verbose.
QUIET_LOGGERS = {
    "sqlalchemy.engine": logging.WARNING,
    "sqlalchemy.pool": logging.WARNING,
    "sse_starlette": logging.INFO,
    "botocore": logging.INFO,
    "aiobotocore": logging.INFO,
    "urllib3": logging.INFO,
    "httpcore": logging.INFO,
    # At INFO httpx logs every request's URL: tenants' input and webhook URLs, presigned links.
    "httpx": logging.WARNING,
    "hpack": logging.INFO,
    "multipart": logging.INFO,
    "python_multipart": logging.INFO,
    "asyncio": logging.INFO,
}


def quiet_libraries() -> None:
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}


class SafeLines(logging.Filter):
    """On our handlers: every record is one line (control characters escaped, so a request path
    holding CR/LF cannot forge a log line), and an access-log line has no query string (signed
    media links carry their signature there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            args = list(record.args)
            if len(args) >= 3:
                args[2] = str(args[2]).split("?", 1)[0]
                record.args = tuple(args)
        message = record.getMessage()
        escaped = message.translate(_ESCAPES)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SafeLines) for f in handler.filters):
            handler.addFilter(SafeLines())
    quiet_libraries()
