"""Dashboard sessions end: a cookie saved before sign-out opens nothing after it, a session used
all the time still ends at its absolute lifetime, and a new admin key ends every session."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import httpx

from tests.infra import ADMIN_KEY, base_settings, drop_namespace, running_stack, start_stack


def _sign_in(client: httpx.Client, key: str = ADMIN_KEY) -> None:
    answer = client.post("/dashboard/login", data={"admin_key": key})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard", answer.text


def _opens(client: httpx.Client, cookie: str | None = None) -> bool:
    """Whether the overview shows (else it sends the caller to the sign-in page)."""
    if cookie is not None:
        client.cookies.set("mg_dashboard", cookie)
    return client.get("/dashboard").status_code == 200


def test_a_cookie_saved_before_sign_out_opens_nothing(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        with httpx.Client(base_url=stack.url) as browser:
            _sign_in(browser)
            saved = browser.cookies["mg_dashboard"]
            page = browser.get("/dashboard")
            csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text)
            assert csrf is not None
            out = browser.post("/dashboard/logout", data={"_csrf": csrf.group(1)})
        with httpx.Client(base_url=stack.url) as thief:
            replayed = _opens(thief, saved)
    assert out.status_code == 303
    assert not replayed


def test_a_session_ends_at_its_lifetime_however_often_it_is_used(pg_url: str) -> None:
    settings = base_settings(pg_url, dashboard_session_seconds=3)
    with (
        running_stack(settings, embedded_worker=False) as stack,
        httpx.Client(base_url=stack.url) as browser,
    ):
        _sign_in(browser)
        used = []
        for _ in range(5):
            used.append(_opens(browser))
            time.sleep(1)
    assert used[:2] == [True, True]
    assert used[-1] is False  # used every second, yet over after 3 s


def test_a_new_admin_key_ends_every_session(pg_url: str) -> None:
    settings = base_settings(pg_url)
    first = start_stack(settings, embedded_worker=False)
    try:
        with httpx.Client(base_url=first.url) as browser:
            _sign_in(browser)
            saved = browser.cookies["mg_dashboard"]
            assert _opens(browser)
    finally:
        first.stop()
    rotated = replace(settings, admin_key="a-brand-new-admin-key-0123456789")
    second = start_stack(rotated, embedded_worker=False)
    try:
        with httpx.Client(base_url=second.url) as browser:
            reopened = _opens(browser, saved)
        with httpx.Client(base_url=second.url) as browser:
            _sign_in(browser, "a-brand-new-admin-key-0123456789")
            fresh = _opens(browser)
    finally:
        second.stop()
        drop_namespace(settings.redis_namespace)
    assert not reopened
    assert fresh
