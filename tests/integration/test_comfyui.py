"""A pool of two emulated ComfyUI servers: workflows filled with the job's parameters (a seed of
its own when none is given), progress over /ws with /history as the fallback, our prompt_id
found in /history or /queue instead of run twice, one job per server slot, node errors named,
cancel of exactly that prompt, an input image uploaded, a video workflow; and a server killed
mid-job, the job retried on the other, nothing stored twice."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from providers.base import GenerationRequest, InputFile
from providers.comfyui import ComfyUIProvider
from providers.comfyui_pool import ComfyPool, LocalSlots
from providers.comfyui_workflows import comfyui_from_config, job_seed
from tests.builders import openai_client
from tests.comfy_workflows import comfyui_section, models_file_text
from tests.emulators.base import png_bytes, serve
from tests.emulators.comfyui import ComfyUIEmulator
from tests.infra import (
    Stack,
    base_settings,
    media_rows,
    run_job,
    running_stack,
    until,
    wait_for_job,
)
from tests.media_checks import mp4_facts, png_size
from tests.provider_calls import Hooks, outputs, resumed

SDXL = "comfyui/sdxl"


@pytest.fixture(scope="module")
def servers() -> Iterator[list[ComfyUIEmulator]]:
    with serve(ComfyUIEmulator()) as a, serve(ComfyUIEmulator()) as b:
        yield [a, b]


@pytest.fixture
def comfy(servers: list[ComfyUIEmulator]) -> Iterator[list[ComfyUIEmulator]]:
    for server in servers:
        server.reset()
    yield servers
    for server in servers:
        server.release()


def _settings(pg_url: str, path: Path, urls: list[str]) -> Any:
    path.write_text(models_file_text(urls))
    return base_settings(
        pg_url,
        models_file=str(path),
        poll_initial_seconds=0.05,
        poll_max_seconds=0.2,
        retry_base_seconds=0.05,
        allow_private_urls=True,
    )


@pytest.fixture(scope="module")
def comfy_stack(
    pg_url: str, servers: list[ComfyUIEmulator], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    path = tmp_path_factory.mktemp("comfy") / "models.yaml"
    with running_stack(
        _settings(pg_url, path, [s.url for s in servers]), embedded_worker=True
    ) as s:
        yield s


def _provider(http: httpx.AsyncClient, urls: list[str], health: float = 0.2) -> ComfyUIProvider:
    config = comfyui_from_config(comfyui_section(urls, health_seconds=health), Path("."))
    pool = ComfyPool(http, config.servers, LocalSlots(), health_seconds=config.health_seconds)
    return ComfyUIProvider(http, config, pool, poll_initial_seconds=0.05, poll_max_seconds=0.2)


def _image(job_id: str = "job_c1", **params: Any) -> GenerationRequest:
    return GenerationRequest(
        job_id, "image", "sdxl", {"prompt": "a red fox", "n": 1, "size": "1024x1024", **params}
    )


def _graphs(comfy: list[ComfyUIEmulator]) -> list[dict[str, Any]]:
    return [s.prompts[p]["graph"] for s in comfy for p in s.created]


def test_images_through_the_openai_sdk(comfy_stack: Stack, comfy: list[ComfyUIEmulator]) -> None:
    client = openai_client(comfy_stack, comfy_stack.new_key())
    images = client.images.generate(model=SDXL, prompt="a red fox", n=2, size="1152x896")
    assert len(images.data) == 2  # the SaveImage files; the PreviewImage ones are not outputs
    for image in images.data:
        assert image.url is not None
        assert png_size(httpx.get(image.url, follow_redirects=True).content) == (64, 64)
    (graph,) = _graphs(comfy)
    assert graph["6"]["inputs"]["text"] == "a red fox"
    assert graph["7"]["inputs"]["text"] == "blurry"  # the template's own negative prompt
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"]) == (1152, 896)
    assert graph["5"]["inputs"]["batch_size"] == 2
    assert graph["3"]["inputs"]["seed"] != 0  # a seed of the job's own


def test_a_video_through_the_openai_sdk(comfy_stack: Stack, comfy: list[ComfyUIEmulator]) -> None:
    client = openai_client(comfy_stack, comfy_stack.new_key())
    video = client.videos.create_and_poll(
        model="comfyui/hunyuan", prompt="waves", seconds="4", size="848x480"
    )
    assert video.status == "completed", video.error
    _, width, height, codec = mp4_facts(client.videos.download_content(video.id).read())
    assert (width, height, codec) == (320, 180, "h264")
    (graph,) = _graphs(comfy)
    assert graph["5"]["inputs"]["length"] == 4 * 24  # seconds times the default fps


async def test_parameters_and_seeds(comfy_stack: Stack, comfy: list[ComfyUIEmulator]) -> None:
    body = {
        "type": "image",
        "model": SDXL,
        "input": {"prompt": "a fox", "negative_prompt": "text", "steps": 12, "seed": 7},
    }
    assert (await run_job(comfy_stack, body))["status"] == "succeeded"
    plain = {"type": "image", "model": SDXL, "input": {"prompt": "a fox"}}
    one, two = await asyncio.gather(run_job(comfy_stack, plain), run_job(comfy_stack, plain))
    assert one["status"] == two["status"] == "succeeded"
    given, *rest = sorted(_graphs(comfy), key=lambda g: g["3"]["inputs"]["seed"] != 7)
    assert given["7"]["inputs"]["text"] == "text" and given["3"]["inputs"]["steps"] == 12
    # No seed given: each job its own, so ComfyUI's cache cannot hand back another's image.
    seeds = {g["3"]["inputs"]["seed"] for g in rest}
    assert seeds == {job_seed(one["id"]), job_seed(two["id"])} and len(seeds) == 2
    refused = await _run_refused(comfy_stack, {**plain, "model": "comfyui/sdxl-edit"}, "steps")
    assert refused["param"] == "input.steps"


async def _run_refused(stack: Stack, body: dict[str, Any], field: str) -> dict[str, Any]:
    async with stack.client(stack.new_key()) as client:
        resp = await client.post("/v1/jobs", json={**body, "input": {**body["input"], field: 10}})
    assert resp.status_code == 400, resp.text
    error: dict[str, Any] = resp.json()["error"]
    return error


async def test_progress_over_the_socket_and_without_it(
    http: httpx.AsyncClient, comfy: list[ComfyUIEmulator]
) -> None:
    hooks = Hooks()
    assert len(await outputs(_provider(http, [comfy[0].url]), _image(), hooks)) == 1
    steps = [p for p in hooks.progress_seen if 10 < p < 90]
    assert len(steps) >= 4, hooks.progress_seen  # per-step progress from /ws (8 steps)
    comfy[0].refuse_sockets = True  # /history alone carries the job to its end
    quiet = Hooks()
    try:
        assert len(await outputs(_provider(http, [comfy[0].url]), _image("job_c2"), quiet)) == 1
    finally:
        comfy[0].refuse_sockets = False
    assert not [p for p in quiet.progress_seen if 10 < p < 90]


async def test_a_retry_finds_its_prompt_instead_of_running_it_twice(
    http: httpx.AsyncClient, comfy: list[ComfyUIEmulator]
) -> None:
    server = comfy[0]
    server.hold()
    hooks = Hooks()
    first = asyncio.create_task(outputs(_provider(http, [server.url]), _image(), hooks))
    await until(lambda: bool(server.created))
    first.cancel()  # the worker died with the prompt running
    with pytest.raises(asyncio.CancelledError):
        await first
    assert hooks.last_task == f"{server.url}|{server.created[0]}"
    server.release()
    again = Hooks()
    request = resumed(_image(), hooks.last_task)
    assert len(await outputs(_provider(http, [server.url]), request, again)) == 1
    assert len(server.created) == 1  # found in the queue, followed there
    # A prompt the server lost (it restarted): sent again under the same id, on the same server.
    server.history.clear()
    lost = resumed(_image("job_c3"), f"{server.url}|lost-prompt-1")
    assert len(await outputs(_provider(http, [server.url]), lost)) == 1
    assert server.created[1:] == ["lost-prompt-1"]


async def test_one_job_per_server_slot(comfy_stack: Stack, comfy: list[ComfyUIEmulator]) -> None:
    body = {"type": "image", "model": SDXL, "input": {"prompt": "a fox"}}
    jobs = await asyncio.gather(*(run_job(comfy_stack, body) for _ in range(5)))
    assert all(job["status"] == "succeeded" for job in jobs)
    assert sum(len(s.created) for s in comfy) == 5
    assert all(s.created for s in comfy)  # the jobs spread over both servers
    assert [s.most_busy for s in comfy] == [1, 1]  # neither ever had a second prompt queued


async def test_a_node_error_names_the_node(
    comfy_stack: Stack, comfy: list[ComfyUIEmulator]
) -> None:
    job = await run_job(
        comfy_stack, {"type": "image", "model": "comfyui/broken", "input": {"prompt": "x"}}
    )
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["code"] == "invalid_request"
    message = job["error"]["message"]
    assert "node 4 (CheckpointLoaderSimple)" in message and "ckpt_name" in message
    assert "missing-model" not in message  # the server's file names stay in the worker log


async def test_cancel_stops_exactly_that_prompt(
    http: httpx.AsyncClient, comfy: list[ComfyUIEmulator]
) -> None:
    server = comfy[0]
    server.hold()
    graph = comfyui_section([server.url])["workflows"]["sdxl"]["graph"]
    for prompt_id in ("running-1", "pending-1", "pending-2"):
        sent = await http.post(
            server.url + "/prompt", json={"prompt": graph, "prompt_id": prompt_id}
        )
        assert sent.status_code == 200, sent.text
    provider = _provider(http, [server.url])
    await provider.cancel(f"{server.url}|pending-1")
    await provider.cancel(f"{server.url}|running-1")
    assert server.canceled == ["pending-1"] and server.interrupted == ["running-1"]
    server.release()
    await until(lambda: "pending-2" in server.history)
    assert server.history["running-1"]["status"]["status_str"] == "error"
    assert server.history["pending-2"]["status"]["status_str"] == "success"


async def test_a_running_job_canceled_through_the_api(
    comfy_stack: Stack, comfy: list[ComfyUIEmulator]
) -> None:
    for server in comfy:
        server.hold()
    async with comfy_stack.client(comfy_stack.new_key()) as client:
        resp = await client.post(
            "/v1/jobs", json={"type": "image", "model": SDXL, "input": {"prompt": "x"}}
        )
        job_id = resp.json()["id"]
        await until(lambda: any(s.created for s in comfy))
        assert (await client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200
        await until(lambda: any(s.interrupted for s in comfy))
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert [p for s in comfy for p in s.interrupted] == [p for s in comfy for p in s.created]
    assert job["status"] == "canceled"


async def test_an_input_image_and_a_video(
    http: httpx.AsyncClient, comfy: list[ComfyUIEmulator]
) -> None:
    provider = _provider(http, [comfy[0].url])
    edit = GenerationRequest(
        "job_c4",
        "image",
        "sdxl-edit",
        {"prompt": "make it blue", "n": 1, "size": "1024x1024"},
        files={"image": InputFile("in.png", "image/png", png_bytes("32x32"))},
    )
    assert len(await outputs(provider, edit)) == 1
    assert "mediagate-job_c4.png" in comfy[0].uploads
    assert comfy[0].prompts[comfy[0].created[0]]["graph"]["11"]["inputs"]["image"] == (
        "mediagate-job_c4.png"
    )
    video = GenerationRequest(
        "job_c5",
        "video",
        "hunyuan",
        {"prompt": "waves", "seconds": 2, "fps": 24, "size": "848x480"},
    )
    ((content_type, data),) = await outputs(provider, video)
    graph = comfy[0].prompts[comfy[0].created[1]]["graph"]
    assert graph["5"]["inputs"]["length"] == 48 and graph["9"]["inputs"]["frame_rate"] == 24
    assert content_type == "video/mp4" and mp4_facts(data)[3] == "h264"


async def test_a_server_that_is_down_is_taken_out_and_put_back(
    http: httpx.AsyncClient, comfy: list[ComfyUIEmulator]
) -> None:
    provider = _provider(http, [s.url for s in comfy], health=0.1)
    comfy[0].down = True  # /system_stats answers 503
    for n in range(3):
        await outputs(provider, _image(f"job_d{n}"))
    assert (len(comfy[0].created), len(comfy[1].created)) == (0, 3)
    comfy[0].down = False
    await asyncio.sleep(0.15)  # its next check finds it up
    comfy[1].down = True
    await outputs(provider, _image("job_d9"))
    assert len(comfy[0].created) == 1


async def test_a_server_killed_mid_job_and_the_job_retried_on_the_other(
    pg_url: str, tmp_path: Path
) -> None:
    a_alive, b_alive = contextlib.ExitStack(), contextlib.ExitStack()
    try:
        a = a_alive.enter_context(serve(ComfyUIEmulator()))
        b = b_alive.enter_context(serve(ComfyUIEmulator()))
        a.hold()
        b.hold()
        settings = _settings(pg_url, tmp_path / "models.yaml", [a.url, b.url])
        with running_stack(settings, embedded_worker=True) as stack:
            async with stack.client(stack.new_key()) as client:
                body = {"type": "image", "model": SDXL, "input": {"prompt": "a fox", "n": 2}}
                job_id = (await client.post("/v1/jobs", json=body)).json()["id"]
                await until(lambda: bool(a.created or b.created))
                doomed, survivor = (a_alive, b) if a.created else (b_alive, a)
                doomed.close()  # the server dies with the prompt running on it
                survivor.release()
                job = await wait_for_job(client, job_id, timeout=30)
            assert job["status"] == "succeeded", job["error"]
            assert job["attempts"] == 2
            assert len(survivor.created) == 1 and len(job["outputs"]) == 2
            assert await media_rows(settings.database_url, job_id) == 2  # nothing stored twice
    finally:
        a_alive.close()
        b_alive.close()


async def test_slots_are_counted_in_redis_across_processes() -> None:
    """Two pools (two worker processes) sharing Redis give a one-slot server one job at once; a
    claim nobody renews lapses."""
    import redis.asyncio as aredis

    from app.platform.limits import ServerSlots
    from tests.infra import REDIS_URL, drop_namespace, new_namespace

    namespace = new_namespace()
    client = aredis.Redis.from_url(REDIS_URL)
    try:
        one, two = ServerSlots(client, namespace), ServerSlots(client, namespace)
        assert await one.acquire("http://gpu-1:8188", 1, "job_a", 60)
        assert not await two.acquire("http://gpu-1:8188", 1, "job_b", 60)
        assert await two.acquire("http://gpu-2:8188", 1, "job_b", 60)  # another server's slot
        assert await two.acquire("http://gpu-1:8188", 1, "job_a", 60)  # the holder keeps it
        await one.release("http://gpu-1:8188", "job_a")
        assert await two.acquire("http://gpu-1:8188", 1, "job_b", 1)
        await asyncio.sleep(1.1)  # job_b's worker died: its claim lapses
        assert await one.acquire("http://gpu-1:8188", 1, "job_c", 60)
    finally:
        await client.aclose()
        drop_namespace(namespace)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"servers": []}, "at least one server"),
        ({"servers": [{"url": "gpu-1:8188"}]}, "http(s) url"),
        ({"servers": ["http://a:1", "http://a:1"]}, "listed twice"),
        ({"workflows": {"w": {"type": "speech"}}}, "image or video"),
        (
            {"workflows": {"w": {"type": "image", "graph": {"1": {"class_type": "X"}}}}},
            "API format",
        ),
        ({"workflows": {"w": {"type": "image", "graph": "missing.json"}}}, "cannot be read"),
    ],
)
def test_a_malformed_pool_is_refused_at_start(
    tmp_path: Path, change: dict[str, Any], words: str
) -> None:
    section = {**comfyui_section(["http://gpu-1:8188"]), **change}
    with pytest.raises(ValueError, match=re.escape(words)):
        comfyui_from_config(section, tmp_path)


def test_a_workflow_input_must_exist_in_its_graph(tmp_path: Path) -> None:
    section = comfyui_section(["http://gpu-1:8188"])
    sdxl = section["workflows"]["sdxl"]
    with pytest.raises(ValueError, match=re.escape("'3.sed', which the graph lacks")):
        comfyui_from_config(
            {
                **section,
                "workflows": {"w": {**sdxl, "inputs": {"prompt": "6.text", "seed": "3.sed"}}},
            },
            tmp_path,
        )
    with pytest.raises(ValueError, match="max_n above 1 needs an n input"):
        comfyui_from_config(
            {**section, "workflows": {"w": {**sdxl, "inputs": {"prompt": "6.text"}}}}, tmp_path
        )
    (tmp_path / "sdxl.json").write_bytes(orjson.dumps(sdxl["graph"]))
    loaded = comfyui_from_config(
        {**section, "workflows": {"w": {**sdxl, "graph": "sdxl.json"}}}, tmp_path
    )
    (spec,) = loaded.models
    assert spec.name == "comfyui/w" and spec.negative_prompt and spec.max_steps == 40
