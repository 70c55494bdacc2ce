"""The `make dev` demo: submit one image job, follow its SSE stream, save the PNG under ./out/."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse
from PIL import Image

DEMO_JOB = {
    "type": "image",
    "model": "local-image",
    "input": {"prompt": "a lighthouse at dusk, watercolor", "size": "512x512", "seed": 7},
}


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _bar(progress: int, status: str) -> str:
    filled = progress // 5
    return f"\r  [{'#' * filled}{'.' * (20 - filled)}] {progress:3d}% {status:<10}"


async def run_demo(base_url: str, api_key: str, out_dir: Path) -> Path:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
        resp = await client.post("/v1/jobs", json=DEMO_JOB)
        resp.raise_for_status()
        job: dict[str, Any] = resp.json()
        print(f"submitted {job['id']} ({job['model']}); following /v1/jobs/{job['id']}/events")
        async with aconnect_sse(client, "GET", f"/v1/jobs/{job['id']}/events") as source:
            async for sse in source.aiter_sse():
                if not sse.data:
                    continue  # keep-alive comment
                job = orjson.loads(sse.data)
                sys.stdout.write(_bar(job["progress"], job["status"]))
                sys.stdout.flush()
        print()
        if job["status"] != "succeeded":
            raise RuntimeError(f"demo job ended {job['status']}: {job.get('error')}")
        output = job["outputs"][0]
        media = await client.get(output["url"], follow_redirects=True)
        media.raise_for_status()
    Image.open(io.BytesIO(media.content)).verify()  # a real PNG, or this raises
    path = out_dir / f"{job['id']}.png"
    await asyncio.to_thread(_save, path, media.content)
    print(f"saved {path} ({len(media.content)} bytes, sha256 {output['sha256'][:12]}...)")
    return path
