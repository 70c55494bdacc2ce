"""A web page on another origin, as a front-end developer builds one: it follows a job through
`new EventSource(job.urls.stream)` (no key in the page) across a kill and restart of the API
process, shows the image, plays and seeks a video from its signed link, fetch()es media (whole
and a range), gets no event from a bad link (nor from a good one on an origin not allowed), and
reads answers and media only from an allowed origin. Debian's chromium via Playwright; the API
and the worker are real processes, so the API can be killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from app.jobs.links import stream_signature
from tests.builders import free_port, image_job
from tests.infra import (
    ADMIN_KEY,
    ROOT,
    SECRET_KEY,
    api_argv,
    base_settings,
    drop_namespace,
    running_workers,
    settings_env,
    wait_answering,
)

PAGE = """<!doctype html><meta charset="utf-8"><title>follow</title><body>
<div id="log"></div><div id="out"></div>
<script>
  window.seen = []; window.done = false; window.failed = 0;
  window.follow = (link) => {
    const events = new EventSource(link);
    window.source = events;
    events.onerror = () => { window.failed += 1; };
    for (const name of ["job.queued", "job.started", "job.progress", "job.output",
                        "job.retrying", "job.succeeded", "job.failed", "job.canceled"]) {
      events.addEventListener(name, (msg) => {
        window.seen.push({id: Number(msg.lastEventId), event: name});
        if (name === "job.succeeded") {
          events.close();
          const img = document.createElement("img");
          img.id = "result";
          img.src = JSON.parse(msg.data).outputs[0].url;
          document.getElementById("out").appendChild(img);
          window.done = true;
        }
      });
    }
  };
</script>"""


@dataclass
class Api:
    """`mediagate api` in a process of its own, on a fixed port, that the test can kill and
    start again."""

    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            api_argv(self.port),
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_answering(f"{self.url}/healthz", self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def key(self, name: str) -> tuple[str, str]:
        answer = httpx.post(
            f"{self.url}/admin/keys",
            json={"name": name},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert answer.status_code == 201, answer.text
        return answer.json()["id"], answer.json()["key"]

    def submit(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url}/v1/jobs", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 202, answer.text
        job: dict[str, Any] = answer.json()
        return job

    def finished(self, token: str, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = {"status": "queued"}
        while job["status"] in ("queued", "running"):
            job = httpx.get(
                f"{self.url}/v1/jobs/{job_id}?wait=30",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            ).json()
        return job


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """A static page server on loopback: an origin other than the API's."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two page origins: the allowed one and one not in MEDIAGATE_CORS_ORIGINS."""
    folder = tmp_path_factory.mktemp("site")
    (folder / "index.html").write_text(PAGE)
    with serving(folder) as allowed, serving(folder) as other:
        yield allowed, other


@pytest.fixture(scope="module")
def example_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def api(
    pg_url: str,
    site: tuple[str, str],
    example_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    settings = base_settings(
        pg_url,
        storage="files",
        files_dir=str(tmp_path_factory.mktemp("media")),
        local_latency_seconds=4.0,
        local_progress_steps=4,
        cors_origins=f"{site[0]},http://127.0.0.1:{example_port}",
    )
    env = {**os.environ, **settings_env(settings)}
    server = Api(free_port(), env)
    server.start()
    try:
        with running_workers(replace(settings)):
            yield server
    finally:
        server.kill()
        drop_namespace(settings.redis_namespace)


def _page(browser: Browser, origin: str) -> Page:
    page = browser.new_page()
    page.goto(f"{origin}/index.html")
    return page


def test_a_page_follows_a_job_across_an_api_restart(
    browser: Browser, api: Api, site: tuple[str, str], tmp_path: Path
) -> None:
    _, token = api.key("page")
    job = api.submit(token, image_job("a lighthouse"))
    page = _page(browser, site[0])
    page.evaluate("(link) => window.follow(link)", job["urls"]["stream"])
    page.wait_for_function("window.seen.length >= 2", timeout=20_000)
    api.kill()  # mid-stream: the worker goes on, the page's connection drops
    time.sleep(1.0)
    api.start()  # the same port, a new process
    page.wait_for_function("window.done === true", timeout=60_000)
    seen: list[dict[str, Any]] = page.evaluate("window.seen")
    ids = [event["id"] for event in seen]
    assert ids == list(range(1, len(ids) + 1)), seen  # every event once, in order
    assert seen[-1]["event"] == "job.succeeded"
    assert page.evaluate("window.failed") >= 1  # the drop was seen, and survived
    image = page.locator("#result")
    expect(image).to_be_visible()
    page.wait_for_function("document.getElementById('result').naturalWidth > 0")
    page.screenshot(path=tmp_path / "followed.png")
    page.close()


def test_a_video_plays_and_seeks_from_its_signed_link(
    browser: Browser, api: Api, site: tuple[str, str]
) -> None:
    _, token = api.key("video")
    job = api.finished(
        token,
        api.submit(
            token, {"type": "video", "model": "local-video", "input": {"prompt": "w", "seconds": 3}}
        )["id"],
    )
    assert job["status"] == "succeeded", job
    page = _page(browser, site[0])
    played = page.evaluate(
        """async (src) => {
          const video = document.createElement("video");
          video.muted = true;
          document.body.appendChild(video);
          const once = (name) => new Promise((ok, bad) => {
            video.addEventListener(name, ok, {once: true});
            video.addEventListener("error", () => bad(String(video.error && video.error.code)),
                                   {once: true});
          });
          video.src = src;
          await once("loadedmetadata");
          await video.play();
          video.currentTime = 2;
          await once("seeked");
          return {duration: video.duration, at: video.currentTime};
        }""",
        job["outputs"][0]["url"],
    )
    assert 2.5 < played["duration"] < 3.5 and played["at"] >= 1.9
    page.close()


def test_an_allowed_origin_fetches_media_and_another_cannot(
    browser: Browser, api: Api, site: tuple[str, str]
) -> None:
    """A page that works with the bytes (a canvas, a download, a cache) fetch()es the signed link:
    whole or a range of it from an allowed origin; another origin reads nothing."""
    _, token = api.key("media-fetch")
    job = api.finished(token, api.submit(token, image_job("fetch"))["id"])
    assert job["status"] == "succeeded", job
    output = job["outputs"][0]
    script = """async (src) => {
      try {
        const whole = await fetch(src);
        const bytes = (await whole.arrayBuffer()).byteLength;
        const part = await fetch(src, {headers: {Range: "bytes=0-9"}});
        return {status: whole.status, type: whole.headers.get("Content-Type"), bytes,
                part: part.status, partBytes: (await part.arrayBuffer()).byteLength};
      } catch (error) { return {blocked: String(error)}; }
    }"""
    allowed = _page(browser, site[0])
    got = allowed.evaluate(script, output["url"])
    assert got == {
        "status": 200,
        "type": "image/png",
        "bytes": output["bytes"],
        "part": 206,
        "partBytes": 10,
    }, got
    other = _page(browser, site[1])
    assert "blocked" in other.evaluate(script, output["url"])
    allowed.close()
    other.close()


def test_a_bad_link_gives_the_page_no_event(
    browser: Browser, api: Api, site: tuple[str, str]
) -> None:
    _, token = api.key("links")
    job = api.submit(token, image_job("links"))
    good = job["urls"]["stream"]
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    past = int(time.time()) - 60
    signature = stream_signature(SECRET_KEY.encode(), job["id"], past)  # a real, expired link
    expired = f"{api.url}/v1/jobs/{job['id']}/events?exp={past}&sig={signature}"
    revoked_id, revoked_token = api.key("revoked")
    revoked_job = api.submit(revoked_token, image_job("revoked"))
    deleted = httpx.delete(
        f"{api.url}/admin/keys/{revoked_id}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert deleted.status_code == 200
    cases = [(site[0], tampered), (site[0], expired), (site[0], revoked_job["urls"]["stream"])]
    cases.append((site[1], good))  # a good link, on a page of an origin not allowed
    for origin, link in cases:
        page = _page(browser, origin)
        page.evaluate("(link) => window.follow(link)", link)
        # A refused stream (401, JSON) fails the EventSource for good: closed, no event.
        page.wait_for_function("window.source.readyState === 2", timeout=10_000)
        time.sleep(0.5)
        assert page.evaluate("window.seen") == []
        page.close()


def test_only_an_allowed_origin_reads_answers(
    browser: Browser, api: Api, site: tuple[str, str]
) -> None:
    _, token = api.key("cors")
    script = """async ([base, token]) => {
      try {
        const answer = await fetch(base + "/v1/jobs", {
          method: "POST",
          headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json",
                    "Idempotency-Key": "page-" + Math.random()},
          body: JSON.stringify({type: "image", model: "local-image",
                                input: {prompt: "cors", size: "256x256"}}),
        });
        return {status: answer.status, location: answer.headers.get("Location"),
                retry: answer.headers.get("Retry-After"),
                remaining: answer.headers.get("x-ratelimit-remaining-requests")};
      } catch (error) { return {blocked: String(error)}; }
    }"""
    allowed = _page(browser, site[0])
    answer = allowed.evaluate(script, [api.url, token])
    assert answer["status"] == 202 and answer["location"].startswith("/v1/jobs/job_")
    assert answer["retry"] == "2"
    assert answer["remaining"] is not None and answer["remaining"].isdigit(), answer
    other = _page(browser, site[1])
    assert "blocked" in other.evaluate(script, [api.url, token])
    allowed.close()
    other.close()


def test_the_example_page_shows_its_result(
    browser: Browser, api: Api, example_port: int, tmp_path: Path
) -> None:
    """examples/web as docs/api.md runs it: its server holds the key, its page only the link."""
    _, token = api.key("example")
    env = {**os.environ, "MEDIAGATE_URL": api.url, "MEDIAGATE_API_KEY": token}
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "web" / "server.py")],
        env={**env, "PORT": str(example_port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    origin = f"http://127.0.0.1:{example_port}"
    try:
        wait_answering(f"{origin}/", server, seconds=20)
        page = browser.new_page()
        page.goto(f"{origin}/")
        page.click("button")
        expect(page.locator("#state")).to_have_text("running", timeout=20_000)
        image = page.locator("#result img")
        expect(image).to_be_visible(timeout=30_000)
        page.wait_for_function("document.querySelector('#result img').naturalWidth > 0")
        assert page.evaluate("document.getElementById('bar').value") == 100
        page.screenshot(path=tmp_path / "example.png")
        page.close()
    finally:
        server.terminate()
        server.wait(10)
