"""Failed sign-ins cannot lock out the good, and guessing is limited everywhere: behind a proxy
(MEDIAGATE_FORWARDED_ALLOW_IPS) each client is its own address; a valid key is let in whatever
others guessed from its address; tenant, admin and dashboard failures are counted apart; the admin
key is limited like a tenant key; and each limiter's check and count are one step (concurrent
guesses cannot all pass one check)."""

from __future__ import annotations

import asyncio
import re
import secrets

import httpx

from tests.infra import ADMIN_KEY, Stack, base_settings, running_stack

GUESSER = "203.0.113.9"


def _from(address: str, token: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": address}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _guess() -> str:
    return "mg_" + secrets.token_urlsafe(32)


def _sign_in(stack: Stack, address: str, key: str) -> int:
    with httpx.Client(base_url=stack.url, headers=_from(address)) as browser:
        form = browser.get("/dashboard/login")
        csrf = re.search(r'name="_csrf" value="([^"]+)"', form.text)
        data = {"admin_key": key, **({"_csrf": csrf.group(1)} if csrf else {})}
        return browser.post("/dashboard/login", data=data).status_code


async def test_guesses_behind_a_proxy_do_not_lock_out_valid_keys_or_the_operator(
    pg_url: str,
) -> None:
    # No key cache: every request of the good key reads its row, as a fresh process would.
    settings = base_settings(
        pg_url, auth_failures_per_minute=3, key_cache_seconds=0, forwarded_allow_ips="127.0.0.1"
    )
    with running_stack(settings, embedded_worker=False) as stack:
        good = stack.new_key()
        async with stack.client() as client:
            guesses = [
                (await client.get("/v1/jobs", headers=_from(GUESSER, _guess()))).status_code
                for _ in range(5)
            ]
            valid = await client.get("/v1/jobs", headers=_from(GUESSER, good))
            neighbour = await client.get("/v1/jobs", headers=_from("203.0.113.10", _guess()))
            admin = await client.get("/admin/keys", headers=_from(GUESSER, ADMIN_KEY))
        dashboard = _sign_in(stack, GUESSER, ADMIN_KEY)
    assert guesses == [401, 401, 401, 429, 429]
    assert valid.status_code == 200, valid.text  # a known key, from the guessed address
    assert neighbour.status_code == 401  # another client behind the proxy is not limited
    assert admin.status_code == 200, admin.text  # tenants' failures are not the admin's
    assert dashboard == 303  # nor the dashboard's


async def test_forwarded_for_from_a_proxy_not_trusted_is_ignored(pg_url: str) -> None:
    settings = base_settings(pg_url, auth_failures_per_minute=3, forwarded_allow_ips="")
    with running_stack(settings, embedded_worker=False) as stack:
        async with stack.client() as client:
            statuses = [
                (await client.get("/v1/jobs", headers=_from(f"198.51.100.{i}", _guess())))
                for i in range(4)
            ]
    assert [s.status_code for s in statuses] == [401, 401, 401, 429]


async def test_guessing_the_admin_key_is_limited_and_counted_in_one_step(pg_url: str) -> None:
    """20 wrong admin bearers at once with a limit of 3: exactly 3 are compared (401), the rest
    refused (429), the right key too from that address for the minute; another address and the
    dashboard are not locked. The same for unknown tenant tokens."""
    settings = base_settings(pg_url, auth_failures_per_minute=3, forwarded_allow_ips="127.0.0.1")
    with running_stack(settings, embedded_worker=False) as stack:
        async with stack.client() as client:
            admins = await asyncio.gather(
                *(client.get("/admin/keys", headers=_from(GUESSER, _guess())) for _ in range(20))
            )
            right_after = await client.get("/admin/keys", headers=_from(GUESSER, ADMIN_KEY))
            elsewhere = await client.get("/admin/keys", headers=_from("203.0.113.20", ADMIN_KEY))
            tenants = await asyncio.gather(
                *(
                    client.get("/v1/jobs", headers=_from("203.0.113.30", _guess()))
                    for _ in range(20)
                )
            )
        dashboard = _sign_in(stack, GUESSER, ADMIN_KEY)
        wrong_sign_ins = [_sign_in(stack, "203.0.113.40", "wrong-" * 4) for _ in range(4)]
    assert sorted(a.status_code for a in admins) == [401] * 3 + [429] * 17
    assert admins[-1].json()["error"]["code"] in (
        "invalid_admin_key",
        "too_many_failed_authentications",
    )
    assert right_after.status_code == 429
    assert elsewhere.status_code == 200
    assert sorted(t.status_code for t in tenants) == [401] * 3 + [429] * 17
    assert dashboard == 303
    assert wrong_sign_ins == [401, 401, 401, 429]
