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
    "hpack": logging.INFO,
    "multipart": logging.INFO,
    "python_multipart": logging.INFO,
    "asyncio": logging.INFO,
}


def quiet_libraries() -> None:
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    quiet_libraries()
