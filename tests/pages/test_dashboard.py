"""The operator's dashboard as a person sees it: Debian's chromium, driven by Playwright's own
Python API (`executable_path`: Playwright's browser download does not work here). Screenshots
of each step go to the test's output folder."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.builders import image_job
from tests.infra import ADMIN_KEY, Stack, base_settings, running_stack


@pytest.fixture(scope="module")
def slow_stack(pg_url: str) -> Iterator[Stack]:
    """API and worker, with local jobs that take a few seconds (time to watch and to cancel)."""
    settings = base_settings(pg_url, local_latency_seconds=3.0, local_progress_steps=3)
    with running_stack(settings, embedded_worker=True) as stack:
        yield stack


def _sign_in(page: Page, stack: Stack, key: str = ADMIN_KEY) -> None:
    page.goto(f"{stack.url}/dashboard")
    expect(page).to_have_url(f"{stack.url}/dashboard/login")
    page.fill("#admin_key", key)
    page.click("#login button[type=submit]")


def _submit(stack: Stack, token: str) -> str:
    answer = httpx.post(
        f"{stack.url}/v1/jobs",
        json=image_job("dashboard"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["id"]
    return job_id


def test_a_wrong_admin_key_is_refused(browser: Browser, slow_stack: Stack, tmp_path: Path) -> None:
    page = browser.new_page()
    _sign_in(page, slow_stack, key="not-the-admin-key-at-all")
    expect(page.get_by_role("alert")).to_have_text("That is not the admin key.")
    expect(page).to_have_url(f"{slow_stack.url}/dashboard/login")
    page.screenshot(path=tmp_path / "refused.png")
    # Nothing behind the sign-in answers without the session.
    assert httpx.get(f"{slow_stack.url}/dashboard/keys", follow_redirects=False).status_code == 302
    page.close()


def test_watch_a_job_succeed_then_cancel_one(
    browser: Browser, slow_stack: Stack, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    _sign_in(page, slow_stack)
    expect(page).to_have_url(f"{slow_stack.url}/dashboard")
    cookie = next(c for c in page.context.cookies() if c["name"] == "mg_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    token = slow_stack.new_key("dashboard")
    job_id = _submit(slow_stack, token)
    row_status = page.locator(f'tr[data-job="{job_id}"] [data-status]')
    # The page was not reloaded: the row arrives, then changes, over our event stream.
    expect(row_status).to_be_visible(timeout=10_000)
    page.screenshot(path=tmp_path / "overview-live.png")
    expect(row_status).to_have_text("succeeded", timeout=30_000)
    page.screenshot(path=tmp_path / "overview-succeeded.png", full_page=True)

    # Links and forms are boosted by htmx: the keys page comes without a reload.
    page.evaluate("window.stayed = true")
    page.click("nav >> text=Keys")
    expect(page).to_have_url(f"{slow_stack.url}/dashboard/keys")
    expect(page.locator("h1")).to_have_text("Keys")
    assert page.evaluate("window.stayed === true")
    page.goto(f"{slow_stack.url}/dashboard")
    page.click(f'a[href="/dashboard/jobs/{job_id}"]')
    image = page.locator("img.output")
    expect(image).to_be_visible()
    page.wait_for_function("document.querySelector('img.output').naturalWidth > 0")
    assert page.evaluate("document.querySelector('img.output').naturalWidth") == 256
    page.screenshot(path=tmp_path / "job.png", full_page=True)

    running = _submit(slow_stack, token)
    page.goto(f"{slow_stack.url}/dashboard/jobs/{running}")
    expect(page.locator("#job-status")).to_have_text("running", timeout=15_000)
    page.click("#cancel")
    expect(page.locator("#job-status")).to_have_text("canceled", timeout=10_000)
    page.screenshot(path=tmp_path / "canceled.png", full_page=True)
    job = httpx.get(
        f"{slow_stack.url}/v1/jobs/{running}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert job["status"] == "canceled"

    # On a phone the pages still read (no horizontal overflow of the page itself).
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.context.add_cookies([cookie])  # type: ignore[list-item]
    phone.goto(f"{slow_stack.url}/dashboard")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    phone.screenshot(path=tmp_path / "phone.png", full_page=True)
    phone.close()
    page.close()


def _wait_for(
    stack: Stack, token: str, job_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        job: dict[str, Any] = httpx.get(
            f"{stack.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        if done(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def _fail(pg_url: str, job_id: str) -> None:
    """As if its provider had failed it (in a thread: Playwright's sync API holds this thread's
    event loop)."""

    async def update() -> None:
        conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await conn.execute(
                "UPDATE jobs SET status = 'failed', error_code = 'provider_error' WHERE id = $1",
                job_id,
            )
        finally:
            await conn.close()

    worker = threading.Thread(target=asyncio.run, args=(update(),))
    worker.start()
    worker.join(30)


def test_pages_actions_and_csrf(slow_stack: Stack, pg_url: str) -> None:
    """Keys and providers pages, an action refused without its CSRF token, a failed job retried
    from its page."""
    token = slow_stack.new_key("pages")
    job_id = _submit(slow_stack, token)
    with httpx.Client(base_url=slow_stack.url, follow_redirects=False) as client:
        signed = client.post("/dashboard/login", data={"admin_key": ADMIN_KEY})
        assert signed.status_code == 303 and "mg_dashboard" in client.cookies
        keys = client.get("/dashboard/keys").text
        assert "pages" in keys and "requests/min" in keys
        csrf = re.search(r'name="_csrf" value="([^"]+)"', client.get("/dashboard").text)
        assert csrf is not None
        # The cookie alone is not enough for an action.
        assert client.post(f"/dashboard/jobs/{job_id}/cancel", data={}).status_code == 401
        assert (
            _wait_for(slow_stack, token, job_id, lambda j: j["status"] == "succeeded")["status"]
            == "succeeded"
        )
        _fail(pg_url, job_id)
        providers = client.get("/dashboard/providers").text
        assert "local" in providers and "provider_error" in providers
        retried = client.post(f"/dashboard/jobs/{job_id}/retry", data={"_csrf": csrf.group(1)})
        assert retried.status_code == 303
        assert retried.headers["location"] == f"/dashboard/jobs/{job_id}"
        again = _wait_for(
            slow_stack, token, job_id, lambda j: j["status"] == "succeeded" and j["attempts"] == 2
        )
        assert (again["status"], again["attempts"]) == ("succeeded", 2)
        # Retrying a job that did not fail changes nothing, and the page says why.
        client.post(f"/dashboard/jobs/{job_id}/retry", data={"_csrf": csrf.group(1)})
        assert "only a failed job can be retried" in client.get(f"/dashboard/jobs/{job_id}").text


def test_the_live_list_is_sent_again_only_when_it_changes(slow_stack: Stack) -> None:
    """The page swaps each part it receives; a list swapped every tick would take a link from
    under the pointer (a lost click). Unchanged, the list is not sent again; changed, it is."""
    token = slow_stack.new_key("quiet")
    with httpx.Client(base_url=slow_stack.url, headers={"Authorization": f"Bearer {token}"}) as api:
        key_id = api.get("/v1/usage").json()["key_id"]
    with httpx.Client(base_url=slow_stack.url, timeout=10) as client:
        client.post("/dashboard/login", data={"admin_key": ADMIN_KEY})
        quiet: list[str] = []
        later: list[str] = []
        # Only this key's jobs: none yet, so the list stays the same for three ticks and more.
        with client.stream("GET", "/dashboard/stream", params={"key": key_id}) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            started = time.monotonic()
            while time.monotonic() - started < 5.0:
                quiet.append(next(lines))
            job_id = _submit(slow_stack, token)
            while not any(job_id in line for line in later):
                later.append(next(lines))
        assert quiet.count("event: jobs") == 1, quiet
        assert later.count("event: jobs") == 1, later
