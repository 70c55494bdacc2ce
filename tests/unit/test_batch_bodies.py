"""The batch body parser: a bad line is a 400 naming it and never anything else, whatever the
input (fuzzed); a body with more jobs' worth of lines or JSON values than a batch takes is refused
before it is parsed, with no object made for it."""

from __future__ import annotations

import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.batches.bodies import MAX_TOKENS, parse_items
from app.batches.schemas import MAX_BATCH
from app.platform.errors import InvalidRequestError
from tests.builders import JSON_VALUES, dumps

JSONL = "application/jsonl"
JOB = {"type": "image", "model": "local-image", "input": {"prompt": "a fox"}}


def _line(**fields: Any) -> bytes:
    return orjson.dumps(
        {"custom_id": "a", "method": "POST", "url": "/v1/jobs", "body": JOB, **fields}
    )


def _refusal(content_type: str, raw: bytes) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        parse_items(content_type, raw)
    return caught.value


@pytest.mark.parametrize(
    ("line", "param"),
    [
        (_line(url=["/v1/jobs"]), "requests[1].url"),
        (_line(url={"a": 1}), "requests[1].url"),
        (_line(method=["POST"]), "requests[1].method"),
        (_line(body="a string"), "requests[1].body"),
        (_line(body=[JOB]), "requests[1].body"),
        (_line(custom_id={"an": "object"}), "requests[1].custom_id"),
        (_line(custom_id=7), "requests[1].custom_id"),
        (_line(extra=1), "requests[1].extra"),
        (_line(body={**JOB, "input": "text"}), "requests[1].input"),
        (b"[1, 2", "requests[1]"),
        (b'"just a string"', "requests[1]"),
    ],
)
def test_a_malformed_line_is_a_400_naming_it(line: bytes, param: str) -> None:
    body = _line(custom_id="first") + b"\n\n" + line + b"\n"
    refused = _refusal(JSONL, body)
    assert refused.param is not None and refused.param.startswith(param), refused.param
    assert refused.message.startswith("Line 3"), refused.message  # the blank line counts


def test_nesting_deeper_than_a_job_needs_is_refused() -> None:
    deep = {**JOB, "input": {"prompt": "x", "seed": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}}
    refused = _refusal("application/json", orjson.dumps([{**deep, "custom_id": "a"}]))
    assert "nests deeper" in refused.message and refused.param == "requests[0].input"


def test_more_lines_than_a_batch_takes_are_refused_unparsed() -> None:
    body = b"{}\n" * 3_000_000  # 9 MB: every line a dict if parsed
    tracemalloc.start()
    try:
        refused = _refusal(JSONL, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"more than {MAX_BATCH} lines" in refused.message
    assert peak < 1_000_000, peak  # the lines were counted, not kept


@pytest.mark.parametrize(
    "body",
    [
        b"[" + b"{}," * 2_000_000 + b"{}]",
        b'{"requests": [' + b"[]," * 2_000_000 + b"[]]}",
        b"[" + b"0," * 3_000_000 + b"0]",
    ],
)
def test_more_values_than_a_batch_needs_are_refused_unparsed(body: bytes) -> None:
    tracemalloc.start()
    try:
        refused = _refusal("application/json", body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"at most {MAX_TOKENS}" in refused.message
    assert peak < 1_000_000, peak


def test_commas_in_prompts_do_not_count() -> None:
    prompt = "red, green, blue, " * 200  # 600 commas a prompt: 600,000 in the batch
    items = [{**JOB, "input": {"prompt": prompt}, "custom_id": f"r{i}"} for i in range(MAX_BATCH)]
    parsed, _ = parse_items("application/json", orjson.dumps(items))
    assert len(parsed) == MAX_BATCH and parsed[-1].input["prompt"] == prompt


def test_a_thousand_lines_are_taken_and_a_thousand_and_one_are_not() -> None:
    lines = [_line(custom_id=f"r{i}") for i in range(MAX_BATCH + 1)]
    items, _ = parse_items(JSONL, b"\n".join(lines[:MAX_BATCH]))
    assert [item.custom_id for item in items[:2]] == ["r0", "r1"]
    assert f"at most {MAX_BATCH}" in _refusal(JSONL, b"\n".join(lines)).message
    as_array = orjson.dumps([{**JOB, "custom_id": f"r{i}"} for i in range(MAX_BATCH + 1)])
    assert f"this one has {MAX_BATCH + 1}" in _refusal("application/json", as_array).message


FIELDS = st.sampled_from(["custom_id", "method", "url", "body", "type", "model", "input"])
LINES = st.one_of(
    JSON_VALUES,
    st.dictionaries(FIELDS, JSON_VALUES, max_size=5),
    st.fixed_dictionaries(
        {"custom_id": JSON_VALUES, "method": JSON_VALUES, "url": JSON_VALUES, "body": JSON_VALUES}
    ),
    st.fixed_dictionaries(
        {"custom_id": st.text(max_size=5)},
        optional={"type": JSON_VALUES, "model": JSON_VALUES, "input": JSON_VALUES},
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINES, max_size=4), jsonl=st.booleans(), noise=st.binary(max_size=6))
def test_no_input_is_anything_but_items_or_a_400(
    lines: list[Any], jsonl: bool, noise: bytes
) -> None:
    if jsonl:
        raw = b"\n".join(dumps(line) for line in lines) + noise
        content_type = JSONL
    else:
        raw = dumps(lines) + noise
        content_type = "application/json"
    try:
        items, _ = parse_items(content_type, raw)
    except InvalidRequestError as exc:
        assert exc.message and (exc.param is None or exc.param.startswith("requests"))
    else:
        assert 1 <= len(items) <= MAX_BATCH
