"""The command line trusts no server-supplied name: against a hostile server (loopback), file
names come only from ids of our pattern and integer indexes, terminal escapes and rich markup in
the server's strings never reach the terminal, and the key goes only to the configured API's
origin, never to an output URL elsewhere."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.client.api import Client, ClientError
from tests.builders import png
from tests.infra import run_cli

EVIL = "\x1b]0;pwned\x07\x1b[2J[link=https://evil.example]click[/link]"


class Hostile:
    """A server that answers what it is told, and remembers the Authorization it was sent."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.seen_auth: list[str | None] = []
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                hostile.seen_auth.append(self.headers.get("Authorization"))
                path = self.path.split("?")[0]
                if path.startswith("/v1/jobs/"):
                    found = hostile.jobs.get(path.removeprefix("/v1/jobs/"))
                    body, kind, status = json.dumps(found).encode(), "application/json", 200
                    if found is None:
                        body = json.dumps({"error": {"message": EVIL, "code": EVIL}}).encode()
                        status = 404
                elif path.startswith("/file"):
                    body, kind, status = png(), "image/png", 200
                else:
                    body, kind, status = b"{}", "application/json", 404
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Hostile, Hostile]]:
    api, elsewhere = Hostile(), Hostile()
    try:
        yield api, elsewhere
    finally:
        api.close()
        elsewhere.close()


def _job(job_id: str, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": job_id,
        "type": "image",
        "model": EVIL,
        "served_by": EVIL,
        "status": "succeeded",
        "progress": 100,
        "attempts": 1,
        "outputs": outputs,
        "error": {"code": EVIL, "message": EVIL},
        "cost": {},
    }


def _output(url: str, index: Any = 0) -> dict[str, Any]:
    return {"index": index, "url": url, "content_type": "image/png", "bytes": 1}


@pytest.mark.parametrize(
    ("job_id", "index"),
    [
        ("../../etc/evil", 0),
        ("/tmp/absolute", 0),
        ("job_ok/../../x", 0),
        ("job_okay0123", "../x"),
        ("job_okay0123", 1.5),
        ("job_okay0123", True),
    ],
)
def test_no_file_is_named_by_the_server(
    servers: tuple[Hostile, Hostile], tmp_path: Path, job_id: str, index: Any
) -> None:
    api, _ = servers
    job = _job(job_id, [_output(f"{api.url}/file", index)])
    with Client(api.url, "mg_secret") as client, pytest.raises(ClientError):
        client.download(job, tmp_path / "out")
    assert not list(tmp_path.rglob("*.*"))  # nothing written, anywhere under tmp_path


def test_the_key_goes_only_to_the_api_origin(
    servers: tuple[Hostile, Hostile], tmp_path: Path
) -> None:
    api, elsewhere = servers
    job = _job("job_okay0123", [_output("/file", 0), _output(f"{elsewhere.url}/file", 1)])
    with Client(api.url, "mg_secret") as client:
        saved = client.download(job, tmp_path)
    assert [p.name for p in saved] == ["job_okay0123-0.png", "job_okay0123-1.png"]
    assert api.seen_auth == ["Bearer mg_secret"]
    assert elsewhere.seen_auth == [None]


CLI_ENV = {"MEDIAGATE_API_KEY": "mg_secret", "COLUMNS": "200", "PATH": "/usr/bin:/bin"}


def test_server_strings_reach_the_terminal_as_text(servers: tuple[Hostile, Hostile]) -> None:
    api, _ = servers
    api.jobs["job_okay0123"] = _job("job_okay0123", [])
    shown = run_cli(CLI_ENV, "jobs", "get", "job_okay0123", "--url", api.url)
    missing = run_cli(CLI_ENV, "jobs", "get", "job_nothere1", "--url", api.url)
    with contextlib.suppress(KeyError):
        del api.jobs["job_okay0123"]
    for answer in (shown, missing):
        printed = answer.stdout + answer.stderr
        assert "\x1b" not in printed and "\x07" not in printed, printed
        assert "[link=https://evil.example]click[/link]" in printed  # shown as text, not markup
    assert shown.returncode == 0 and missing.returncode == 1
