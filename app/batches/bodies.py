"""A batch body (a JSON array, `{"requests": [...]}` or JSONL) as the items it holds, in bounded
memory and without a 500 for any input.

Parsed JSON costs far more than its text: 3 bytes of `{}` become a 64-byte dict, so a few MiB of
them cost hundreds of MiB. So before anything is parsed, a JSONL body's lines are counted, and
the body's tokens (its strings, and the `{`, `[` and `,` outside them: every value parsed needs
one): a body with more than 1,000 jobs' worth of either is refused with no object made. Every
item is then validated as a `POST /v1/jobs` body; a bad one is a 400 naming it
(`requests[3].input`, and for JSONL, its line)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from app.batches.schemas import MAX_BATCH, BatchItem
from app.batches.service import BatchRequest
from app.http.bodies import parse_json, validated
from app.platform.errors import InvalidRequestError, MediagateError
from app.platform.vocabulary import ErrorCode

JSONL_TYPES = ("application/jsonl", "application/x-ndjson", "application/x-jsonlines")
OPENAI_URL = "/v1/jobs"
"""OpenAI's batch lines name the endpoint (`url`) each `body` is for; ours is /v1/jobs."""
OPENAI_FIELDS = frozenset({"custom_id", "method", "url", "body"})

TOKENS_PER_JOB = 128
"""JSON tokens one job may take: its strings (keys and values), and the `{`, `[` and `,` that
open or follow its values. The largest job body (an OpenAI line with every input field, an
input image, a webhook with all its events) takes about 80."""
MAX_TOKENS = MAX_BATCH * TOKENS_PER_JOB

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_LINE = re.compile(rb"\S[^\n]*")
"""A line with something on it, from its first non-blank character (blank lines are skipped
by the regular expression engine, not one by one in Python)."""


def is_jsonl(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in JSONL_TYPES


def _count(raw: bytes, start: int, end: int) -> int:
    return raw.count(b"{", start, end) + raw.count(b"[", start, end) + raw.count(b",", start, end)


def _structure(raw: bytes) -> int:
    """How many JSON values (and keys) `raw` can hold, at most: its strings, and its `{`, `[`
    and `,` outside them, counted up to just past MAX_TOKENS. A bound that counts what strings
    hold too is taken first (C speed); strings are skipped one by one, without a copy, only when
    that bound is over the limit (prompts have commas)."""
    rough = _count(raw, 0, len(raw)) + raw.count(b'"') // 2
    if rough <= MAX_TOKENS:
        return rough
    total, gap = 0, 0
    for string in _STRING.finditer(raw):
        total += 1 + _count(raw, gap, string.start())
        if total > MAX_TOKENS:
            return total
        gap = string.end()
    return total + _count(raw, gap, len(raw))


def _too_many(found: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"A batch holds at most {MAX_BATCH} jobs; this one has {found}.", param="requests"
    )


def _lines(raw: bytes) -> list[tuple[int, int, int]]:
    """`(line number, start, end)` of each line with something on it, and a 400 at the 1,001st:
    nothing past it is looked at, and nothing is copied."""
    spans = []
    line_number, counted_to = 1, 0
    for taken, match in enumerate(_LINE.finditer(raw), start=1):
        if taken > MAX_BATCH:
            raise _too_many(f"more than {MAX_BATCH} lines")
        line_number += raw.count(b"\n", counted_to, match.start())
        counted_to = match.start()
        spans.append((line_number, match.start(), match.end()))
    return spans


def _unwrap(index: int, item: Any) -> Any:
    """An OpenAI batch line (`{"custom_id", "method", "url", "body"}`) as our item."""
    if not (isinstance(item, dict) and "body" in item):
        return item
    unknown = sorted(set(item) - OPENAI_FIELDS)
    if unknown:
        raise InvalidRequestError(
            f"Unknown field {unknown[0]!r} in a batch line; OpenAI's lines have custom_id, "
            "method, url and body.",
            param=f"requests[{index}].{unknown[0]}",
        )
    url, method = item.get("url", OPENAI_URL), item.get("method", "POST")
    if url != OPENAI_URL or method != "POST":
        shown = f"{method} {url}" if isinstance(method, str) and isinstance(url, str) else "?"
        raise InvalidRequestError(
            f"Batch lines may only POST /v1/jobs; got {shown[:100]}.",
            param=f"requests[{index}].{'url' if url != OPENAI_URL else 'method'}",
        )
    body = item["body"]
    if not isinstance(body, dict):
        raise InvalidRequestError(
            "A batch line's body must be a JSON object: a POST /v1/jobs body.",
            param=f"requests[{index}].body",
        )
    if "custom_id" in body and "custom_id" in item:
        raise InvalidRequestError(
            "custom_id is given twice: in the line and in its body.",
            param=f"requests[{index}].custom_id",
        )
    return {**body, "custom_id": item.get("custom_id", body.get("custom_id"))}


def _request(index: int, item: Any) -> BatchRequest:
    valid = validated(BatchItem, _unwrap(index, item), f"requests[{index}]")
    return BatchRequest(
        custom_id=valid.custom_id,
        type=valid.type,
        model=valid.model,
        input=valid.input,
        priority=valid.priority,
        deadline_seconds=valid.deadline_seconds,
        webhook=valid.webhook.model_dump() if valid.webhook else None,
    )


def _jsonl(raw: bytes, lines: list[tuple[int, int, int]]) -> tuple[list[BatchRequest], list[Any]]:
    items, parsed = [], []
    view = memoryview(raw)
    for index, (number, start, end) in enumerate(lines):
        try:
            value = orjson.loads(view[start:end])
        except orjson.JSONDecodeError:
            raise InvalidRequestError(
                f"Line {number} of the JSONL body is not valid JSON.",
                code=ErrorCode.INVALID_JSON,
                param=f"requests[{index}]",
            ) from None
        try:
            items.append(_request(index, value))
        except MediagateError as exc:
            exc.message = f"Line {number}: {exc.message}"
            exc.args = (exc.message,)
            raise
        parsed.append(value)
    return items, parsed


def parse_items(content_type: str, raw: bytes) -> tuple[list[BatchRequest], Any]:
    """The batch's items, each validated as a `POST /v1/jobs` body with a `custom_id` (an invalid
    one is a 400 naming it: `requests[3].input`), and the parsed body (for the fingerprint)."""
    lines = _lines(raw) if is_jsonl(content_type) else None
    if _structure(raw) > MAX_TOKENS:
        raise InvalidRequestError(
            f"This batch body holds more JSON values than {MAX_BATCH} jobs can need "
            f"(at most {MAX_TOKENS}).",
            param="requests",
        )
    if lines is not None:
        items, parsed = _jsonl(raw, lines)
    else:
        parsed = parse_json(raw)
        if isinstance(parsed, dict) and set(parsed) == {"requests"}:
            parsed = parsed["requests"]
        if not isinstance(parsed, list):
            raise InvalidRequestError(
                'A batch is a JSON array of job requests (or {"requests": [...]}, or JSONL '
                "with one per line).",
                param="requests",
            )
        if len(parsed) > MAX_BATCH:
            raise _too_many(str(len(parsed)))
        items = [_request(index, item) for index, item in enumerate(parsed)]
    if not items:
        raise InvalidRequestError("A batch holds at least one job request.", param="requests")
    return items, parsed
