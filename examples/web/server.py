"""The few lines of server code a web app needs: submit the job with the app's own key (which
never reaches the browser), and hand the page the job's `urls.stream`, a signed link to that one
job's progress that the page opens with `new EventSource(...)`, straight to mediagate.

    MEDIAGATE_URL=http://127.0.0.1:8000 MEDIAGATE_API_KEY=mg_... python examples/web/server.py

then open http://127.0.0.1:8080 (run mediagate with MEDIAGATE_CORS_ORIGINS=http://127.0.0.1:8080).
"""

from __future__ import annotations

import json
import os
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

MEDIAGATE = os.environ.get("MEDIAGATE_URL", "http://127.0.0.1:8000")
MODELS = {"image": "local-image", "video": "local-video", "speech": "local-speech"}


class Handler(SimpleHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/generate":
            self.send_error(404)
            return
        asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        kind = asked["type"] if asked.get("type") in MODELS else "image"
        text = str(asked.get("prompt") or "a lighthouse at dusk")[:500]
        job = httpx.post(
            f"{MEDIAGATE}/v1/jobs",
            headers={"Authorization": f"Bearer {os.environ['MEDIAGATE_API_KEY']}"},
            json={
                "type": kind,
                "model": MODELS[kind],
                "input": {"input": text} if kind == "speech" else {"prompt": text},
            },
        ).json()
        body = json.dumps({"id": job["id"], "stream": job["urls"]["stream"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    handler = partial(Handler, directory=str(Path(__file__).parent))
    print(f"example page on http://127.0.0.1:{port}")
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    main()
