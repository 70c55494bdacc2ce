"""schemathesis against our own `/schema/openapi.json`, with a valid virtual key: generated
requests for every operation (valid and invalid) never get a 5xx, and every answer matches the
schema and its declared content type."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from tests.infra import Stack, base_settings, running_stack

EXAMPLES = 20


@pytest.fixture(scope="module")
def fuzz_stack(pg_url: str) -> Iterator[Stack]:
    settings = base_settings(pg_url, sync_wait_seconds=1, max_wait_seconds=1)
    with running_stack(settings, embedded_worker=True) as stack:
        yield stack


@pytest.fixture(scope="module")
def fuzz_token(fuzz_stack: Stack) -> str:
    return fuzz_stack.new_key("fuzz")


def test_no_5xx_and_answers_match_the_schema(fuzz_stack: Stack, fuzz_token: str) -> None:
    # schemathesis' own pytest plugin does not run under pytest 9, so each operation gets a
    # hypothesis test of its own here; failures are gathered and reported together.
    schema = schemathesis.openapi.from_url(f"{fuzz_stack.url}/schema/openapi.json")
    headers = {"Authorization": f"Bearer {fuzz_token}"}
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    failures: dict[str, str] = {}
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=fuzz_stack.url, headers=headers, checks=checks, timeout=30
            )

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # a check failed: keep the first, shrunk one
            failures[label] = f"{type(exc).__name__}: {str(exc)[:600]}"
        tested += 1
    print(f"\nschemathesis: {tested} operations, {EXAMPLES} examples each, failures: {failures}")
    assert tested >= 30
    assert failures == {}, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
