"""Job links for web pages over HTTP (the browser's view is tests/pages/test_web.py): every job
carries `urls`; `urls.stream` opens that one job's events without a header, sends a retry hint,
resumes after Last-Event-ID and answers 204 once the last event was delivered; a tampered,
expired, borrowed or revoked link opens nothing; CORS headers only for listed origins."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.builders import image_job
from tests.infra import base_settings, running_stack, wait_for_job

APP = "http://app.example.test"


def _events(text: str) -> list[tuple[str, str]]:
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "event" in fields:
            found.append((fields["id"], fields["event"]))
    return found


async def test_the_stream_link_needs_no_header_and_opens_nothing_else(pg_url: str) -> None:
    settings = base_settings(pg_url, public_url="https://media.example.test")
    with running_stack(settings, embedded_worker=True) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            job = (await client.post("/v1/jobs", json=image_job("link"))).json()
            other = (await client.post("/v1/jobs", json=image_job("other"))).json()
            await wait_for_job(client, job["id"])
            listed = (await client.get("/v1/jobs")).json()["data"]
        urls = job["urls"]
        assert urls["get"] == f"https://media.example.test/v1/jobs/{job['id']}"
        assert urls["cancel"] == f"https://media.example.test/v1/jobs/{job['id']}/cancel"
        assert all("urls" in item for item in listed)
        # The public URL names where clients reach us; the test reaches the stack directly.
        path = urlsplit(urls["stream"])
        link = f"{path.path}?{path.query}"
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as anonymous:
            answer = await anonymous.get(link)
            assert answer.status_code == 200
            assert answer.text.startswith("retry: 1000")
            events = _events(answer.text)
            assert events[-1][1] == "job.succeeded"
            again = await anonymous.get(link, headers={"Last-Event-ID": events[-1][0]})
            resumed = await anonymous.get(link, headers={"Last-Event-ID": events[0][0]})
            borrowed = await anonymous.get(link.replace(job["id"], other["id"]))
            query = parse_qs(path.query)
            tampered = await anonymous.get(
                f"{path.path}?exp={int(query['exp'][0]) + 60}&sig={query['sig'][0]}"
            )
            cancel = await anonymous.post(f"/v1/jobs/{job['id']}/cancel?{path.query}")
    assert again.status_code == 204 and again.content == b""  # EventSource stops here
    assert _events(resumed.text) == events[1:]
    for refused in (borrowed, tampered):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_stream_link"
        assert "event:" not in refused.text
    assert cancel.status_code == 401  # the link opens the stream, nothing else


async def test_an_expired_link_opens_nothing(pg_url: str) -> None:
    settings = base_settings(pg_url, stream_link_seconds=1)
    with running_stack(settings, embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            job = (await client.post("/v1/jobs", json=image_job("a"))).json()
            await asyncio.sleep(2.1)
        async with httpx.AsyncClient(timeout=10) as anonymous:
            expired = await anonymous.get(job["urls"]["stream"])
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "invalid_stream_link"


async def test_the_link_of_a_deleted_key_opens_nothing(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            job = (await client.post("/v1/jobs", json=image_job("a"))).json()
        async with httpx.AsyncClient(timeout=10) as anonymous:
            async with anonymous.stream("GET", job["urls"]["stream"]) as live:
                opened = live.status_code  # a live stream: its headers are enough
            with stack.admin() as admin:
                key_id = admin.get("/admin/keys").json()["data"][0]["id"]
                assert admin.delete(f"/admin/keys/{key_id}").status_code == 200
            revoked = await anonymous.get(job["urls"]["stream"])
    assert opened == 200
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]


async def test_cors_headers_for_listed_origins_only(pg_url: str) -> None:
    with running_stack(base_settings(pg_url, cors_origins=APP), embedded_worker=False) as stack:
        token = stack.new_key()
        async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
            preflight = await client.options(
                "/v1/jobs",
                headers={
                    "Origin": APP,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
                },
            )
            auth = {"Authorization": f"Bearer {token}"}
            allowed = await client.post(
                "/v1/jobs", json=image_job("c"), headers={**auth, "Origin": APP}
            )
            other = await client.post(
                "/v1/jobs", json=image_job("c"), headers={**auth, "Origin": "https://evil.test"}
            )
            refused = await client.get("/v1/jobs/job_nope", headers={**auth, "Origin": APP})
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == APP
    allowed_headers = preflight.headers["access-control-allow-headers"].lower()
    for name in ("authorization", "content-type", "idempotency-key", "prefer", "last-event-id"):
        assert name in allowed_headers
    assert allowed.headers["access-control-allow-origin"] == APP
    exposed = allowed.headers["access-control-expose-headers"].lower()
    assert "location" in exposed and "retry-after" in exposed
    for name in ("limit", "remaining", "reset"):
        assert f"x-ratelimit-{name}-requests" in exposed
    assert "access-control-allow-origin" not in other.headers
    assert refused.status_code == 404 and refused.headers["access-control-allow-origin"] == APP


async def test_no_cors_headers_without_origins(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        token = stack.new_key()
        async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
            answer = await client.get(
                "/v1/jobs", headers={"Authorization": f"Bearer {token}", "Origin": APP}
            )
    assert answer.status_code == 200
    assert not [h for h in answer.headers if h.startswith("access-control-")]


def _link(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_a_stream_link_hands_out_no_link_that_outlives_it(pg_url: str) -> None:
    """Read through a link of 60 s, every link an event carries (the job's fresh stream link,
    each output's media link, whose own lifetime is an hour) expires when that link does; read
    with the key, they have their own lifetimes."""
    settings = base_settings(pg_url, stream_link_seconds=60, media_url_ttl_seconds=3600)
    with running_stack(settings, embedded_worker=True) as stack:
        async with stack.client(stack.new_key()) as client:
            job = (await client.post("/v1/jobs", json=image_job("outlive"))).json()
            await wait_for_job(client, job["id"])
            link = job["urls"]["stream"]
            keyed = await client.get(f"/v1/jobs/{job['id']}/events")
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as anonymous:
            through_link = await anonymous.get(_link(link))
    link_exp = int(parse_qs(urlsplit(link).query)["exp"][0])
    handed = [int(e) for e in re.findall(r"exp=(\d+)", through_link.text)]
    own = [int(e) for e in re.findall(r"exp=(\d+)", keyed.text)]
    assert handed and all(exp <= link_exp for exp in handed), (link_exp, handed)
    assert max(own) > link_exp + 3000  # the media links' own hour


async def test_link_streams_are_counted_apart_and_the_cap_is_the_keys_own(pg_url: str) -> None:
    """One stream per key by default: the key's own stream does not stop a browser following
    its signed link (counted apart), a second of either is refused, and the admin's
    max_streams for the key lifts its cap."""
    settings = base_settings(pg_url, max_streams_per_key=1)
    with running_stack(settings, embedded_worker=False) as stack:  # jobs stay queued: streams stay
        token = stack.new_key()
        async with (
            stack.client(token) as client,
            httpx.AsyncClient(base_url=stack.url, timeout=30) as browser,
        ):
            job = (await client.post("/v1/jobs", json=image_job("held"))).json()
            events, link = f"/v1/jobs/{job['id']}/events", _link(job["urls"]["stream"])
            async with client.stream("GET", events) as own, browser.stream("GET", link) as followed:
                second_link = await browser.get(link)
                second_own = await client.get(events)
            key_id = (await client.get("/v1/usage")).json()["key_id"]
            with stack.admin() as admin:
                admin.patch(f"/admin/keys/{key_id}", json={"max_streams": 2})
            async with client.stream("GET", events) as first, client.stream("GET", events) as more:
                statuses = (first.status_code, more.status_code)
    assert own.status_code == 200 and followed.status_code == 200
    assert second_link.status_code == 429 and second_own.status_code == 429
    assert "signed links" in second_link.json()["error"]["message"]
    assert statuses == (200, 200)
