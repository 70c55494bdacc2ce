"""A ComfyUI server as its API behaves: `POST /prompt` validates the graph as ComfyUI does
(unknown node types; a missing required input, `required_input_missing`; a checkpoint or input
file the server lacks, `value_not_in_list`; no output node, `prompt_no_outputs`) and queues it
under the caller's `prompt_id` without deduping; one prompt runs at a time, step by step
(`progress` over `/ws` to the prompt's client id, then `executing` with no node and
`execution_success`), into `/history/{prompt_id}`; `/queue` lists running and pending prompts and
deletes pending ones; `/interrupt` with a prompt id stops that prompt only; `/view` serves saved
files, `/upload/image` takes input images, `/system_stats` answers while the server is up.
Tests `hold` prompts at their first step, and read `created`, `interrupted` and `most_busy`."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.emulators.base import Emulator, mp4_bytes, png_bytes

CHECKPOINTS = ("sd_xl_base_1.0.safetensors", "hunyuan_video_t2v_720p.safetensors")
REQUIRED = {
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CLIPTextEncode": ("text", "clip"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptyHunyuanLatentVideo": ("width", "height", "length", "batch_size"),
    "KSampler": ("model", "seed", "steps", "cfg", "positive", "negative", "latent_image"),
    "VAEDecode": ("samples", "vae"),
    "VAEEncode": ("pixels", "vae"),
    "LoadImage": ("image",),
    "SaveImage": ("images",),
    "PreviewImage": ("images",),
    "VHS_VideoCombine": ("images", "frame_rate"),
}
OUTPUT_NODES = ("SaveImage", "PreviewImage", "VHS_VideoCombine")
STEP_SECONDS = 0.01


def _node_error(node: str, graph: dict[str, Any], kind: str, message: str, field: str) -> Any:
    return {
        "errors": [
            {
                "type": kind,
                "message": message,
                "details": f"{field}: {graph[node]['inputs'].get(field)!r}",
                "extra_info": {"input_name": field},
            }
        ],
        "dependent_outputs": [n for n, v in graph.items() if v["class_type"] in OUTPUT_NODES],
        "class_type": graph[node]["class_type"],
    }


class ComfyUIEmulator(Emulator):
    def __init__(self) -> None:
        super().__init__()
        self.prompts: dict[str, dict[str, Any]] = {}
        self.pending: list[str] = []
        self.running: str | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self.uploads: set[str] = set()
        self.outputs: dict[str, tuple[bytes, str]] = {}
        self.interrupted: list[str] = []
        self.sockets: dict[str, WebSocket] = {}
        self.most_busy = 0
        """The most prompts it held (running and pending) at once."""
        self.down = False
        self.refuse_sockets = False
        self._stop: set[str] = set()
        self._runner: asyncio.Task[None] | None = None

    def reset(self) -> None:
        super().reset()
        self.interrupted.clear()
        self.most_busy = 0
        self.down = False
        self.refuse_sockets = False

    def routes(self) -> list[Route]:
        return [
            Route("/system_stats", self.system_stats, methods=["GET"]),
            Route("/prompt", self.submit, methods=["POST"]),
            Route("/queue", self.queue, methods=["GET", "POST"]),
            Route("/interrupt", self.interrupt, methods=["POST"]),
            Route("/history/{prompt_id}", self.history_of, methods=["GET"]),
            Route("/view", self.view, methods=["GET"]),
            Route("/upload/image", self.upload, methods=["POST"]),
        ]

    def app(self) -> Starlette:
        app = super().app()
        app.router.routes.append(WebSocketRoute("/ws", self.ws))
        return app

    async def system_stats(self, request: Request) -> Response:
        if self.down:
            return JSONResponse({"error": "starting"}, 503)
        return JSONResponse(
            {
                "system": {"os": "posix", "comfyui_version": "0.3.60", "python_version": "3.12"},
                "devices": [{"name": "cuda:0 emulated", "type": "cuda", "vram_total": 2**34}],
            }
        )

    # submitting ---------------------------------------------------------------------------
    async def submit(self, request: Request) -> Response:
        body = await request.json()
        graph = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(graph, dict):
            error = {"type": "no_prompt", "message": "No prompt provided", "details": ""}
            return JSONResponse({"error": error, "node_errors": {}}, 400)
        for node_id, node in graph.items():
            if node.get("class_type") not in REQUIRED:
                error = {
                    "type": "invalid_prompt",
                    "message": f"Cannot execute because node {node.get('class_type')} does not "
                    "exist.",
                    "details": f"Node ID '#{node_id}'",
                }
                return JSONResponse({"error": error, "node_errors": {}}, 400)
        if not any(node["class_type"] in OUTPUT_NODES for node in graph.values()):
            error = {"type": "prompt_no_outputs", "message": "Prompt has no outputs"}
            return JSONResponse({"error": error, "node_errors": {}}, 400)
        node_errors = self._validate(graph)
        if node_errors:
            error = {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
            }
            return JSONResponse({"error": error, "node_errors": node_errors}, 400)
        prompt_id = str(body.get("prompt_id") or self.new_id("p"))
        with self.lock:
            self.created.append(prompt_id)  # ComfyUI does not dedupe: twice is twice
        self.prompts[prompt_id] = {"graph": graph, "client_id": body.get("client_id")}
        self.pending.append(prompt_id)
        self.most_busy = max(self.most_busy, len(self.pending) + (self.running is not None))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())
        return JSONResponse(
            {"prompt_id": prompt_id, "number": len(self.created), "node_errors": {}}
        )

    def _validate(self, graph: dict[str, Any]) -> dict[str, Any]:
        errors = {}
        for node_id, node in graph.items():
            inputs = node["inputs"]
            for field in REQUIRED[node["class_type"]]:
                if field not in inputs:
                    errors[node_id] = _node_error(
                        node_id, graph, "required_input_missing", "Required input is missing", field
                    )
                    break
            else:
                if node["class_type"] == "CheckpointLoaderSimple" and (
                    inputs["ckpt_name"] not in CHECKPOINTS
                ):
                    errors[node_id] = _node_error(
                        node_id, graph, "value_not_in_list", "Value not in list", "ckpt_name"
                    )
                elif node["class_type"] == "LoadImage" and inputs["image"] not in self.uploads:
                    errors[node_id] = _node_error(
                        node_id, graph, "value_not_in_list", "Value not in list", "image"
                    )
        return errors

    # running ------------------------------------------------------------------------------
    async def _send(self, prompt_id: str, kind: str, data: dict[str, Any]) -> None:
        socket = self.sockets.get(str(self.prompts[prompt_id].get("client_id")))
        if socket is not None:
            try:
                await socket.send_json({"type": kind, "data": {**data, "prompt_id": prompt_id}})
            except Exception:  # the client went away
                self.sockets.pop(str(self.prompts[prompt_id].get("client_id")), None)

    async def _run(self) -> None:
        while self.pending:
            prompt_id = self.running = self.pending.pop(0)
            graph = self.prompts[prompt_id]["graph"]
            sampler = next(n for n, v in graph.items() if v["class_type"] == "KSampler")
            steps = int(graph[sampler]["inputs"]["steps"])
            await self._send(prompt_id, "execution_start", {"timestamp": 0})
            interrupted = False
            for step in range(1, steps + 1):
                # `held` is a threading.Event (tests set it from their own thread): polled.
                while self.held.is_set() and prompt_id not in self._stop:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                if prompt_id in self._stop:
                    interrupted = True
                    break
                await self._send(
                    prompt_id, "progress", {"value": step, "max": steps, "node": sampler}
                )
                await asyncio.sleep(STEP_SECONDS)
            self.history[prompt_id] = self._entry(prompt_id, graph, interrupted)
            self.running = None
            if interrupted:
                await self._send(prompt_id, "execution_interrupted", {"node_id": sampler})
            else:
                await self._send(prompt_id, "executing", {"node": None})
                await self._send(prompt_id, "execution_success", {"timestamp": 1})

    def _entry(self, prompt_id: str, graph: dict[str, Any], interrupted: bool) -> dict[str, Any]:
        if interrupted:
            return {
                "prompt": [0, prompt_id, graph, {}, []],
                "outputs": {},
                "status": {
                    "status_str": "error",
                    "completed": False,
                    "messages": [["execution_interrupted", {"prompt_id": prompt_id}]],
                },
            }
        outputs: dict[str, Any] = {}
        for node_id, node in graph.items():
            kind = node["class_type"]
            if kind not in OUTPUT_NODES:
                continue
            if kind == "VHS_VideoCombine":
                name = f"{prompt_id}_{node_id}.mp4"
                self.outputs[name] = (mp4_bytes("320x180"), "video/mp4")
                outputs[node_id] = {
                    "gifs": [
                        {
                            "filename": name,
                            "subfolder": "",
                            "type": "output",
                            "format": "video/h264-mp4",
                        }
                    ]
                }
                continue
            latent = next(
                v for v in graph.values() if v["class_type"] in ("EmptyLatentImage", "VAEEncode")
            )
            count = int(latent["inputs"].get("batch_size", 1))
            kept = "output" if kind == "SaveImage" else "temp"
            files = []
            for n in range(count):
                name = f"{prompt_id}_{node_id}_{n:05d}_.png"
                self.outputs[name] = (png_bytes("64x64", prompt_id), "image/png")
                files.append({"filename": name, "subfolder": "", "type": kept})
            outputs[node_id] = {"images": files}
        return {
            "prompt": [0, prompt_id, graph, {}, list(outputs)],
            "outputs": outputs,
            "status": {
                "status_str": "success",
                "completed": True,
                "messages": [["execution_success", {"prompt_id": prompt_id}]],
            },
        }

    # reading and steering -----------------------------------------------------------------
    async def queue(self, request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            for prompt_id in body.get("delete") or []:
                if prompt_id in self.pending:
                    self.pending.remove(prompt_id)
                    with self.lock:
                        self.canceled.append(prompt_id)
            return JSONResponse({})

        def item(prompt_id: str) -> list[Any]:
            return [0, prompt_id, self.prompts[prompt_id]["graph"], {}, []]

        running = [item(self.running)] if self.running else []
        return JSONResponse(
            {"queue_running": running, "queue_pending": [item(p) for p in self.pending]}
        )

    async def interrupt(self, request: Request) -> Response:
        body = await request.json()
        prompt_id = body.get("prompt_id")
        if prompt_id is None or prompt_id == self.running:
            target = self.running
            if target is not None:
                self._stop.add(target)
                with self.lock:
                    self.interrupted.append(target)
        return JSONResponse({})

    async def history_of(self, request: Request) -> Response:
        prompt_id = request.path_params["prompt_id"]
        entry = self.history.get(prompt_id)
        return JSONResponse({} if entry is None else {prompt_id: entry})

    async def view(self, request: Request) -> Response:
        name = request.query_params.get("filename", "")
        if request.query_params.get("type") != "output" or name not in self.outputs:
            return Response(status_code=404)
        data, content_type = self.outputs[name]
        return Response(data, media_type=content_type)

    async def upload(self, request: Request) -> Response:
        # multipart (the parser Litestar uses) reads the form; Starlette's wants another library.
        _, options = parse_options_header(request.headers.get("content-type", ""))
        parts = MultipartParser(io.BytesIO(await request.body()), options["boundary"])
        upload = next((part for part in parts if part.name == "image"), None)
        if upload is None or not upload.filename or not upload.raw:
            return JSONResponse({"error": "no image"}, 400)
        name = str(upload.filename)
        self.uploads.add(name)
        return JSONResponse({"name": name, "subfolder": "", "type": "input"})

    async def ws(self, websocket: WebSocket) -> None:
        if self.refuse_sockets:
            await websocket.close(code=1008)  # before the handshake: refused (403)
            return
        await websocket.accept()
        client_id = websocket.query_params.get("clientId", "")
        self.sockets[client_id] = websocket
        await websocket.send_json(
            {
                "type": "status",
                "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id},
            }
        )
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            self.sockets.pop(client_id, None)
