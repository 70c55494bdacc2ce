"""Self-hosted ComfyUI servers (`comfyui/<workflow>` models): each job takes a slot on a server
that is up (`ComfyPool`), fills its workflow's graph, and submits it with a `prompt_id` of ours,
recorded as the job's task (`<server>|<prompt_id>`) before it is sent: ComfyUI does not dedupe,
so a retry first looks for that prompt in the server's `/history` and `/queue` and follows it
there instead of running it twice. Progress comes over `/ws` (per-step `progress`), with
`/history` polled as the source of truth; a server that stops answering (and fails its health
check) is taken out, the task forgotten, and the retry runs on another server. `node_errors`
name the node and input refused (`value_not_in_list`: a model the server lacks). Cancel
dequeues or interrupts exactly that prompt. Outputs are read through `/view`."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from providers.base import (
    GeneratedMedia,
    GenerationRequest,
    ProviderError,
    ProviderInvalidRequestError,
    ProviderRejectedError,
    ProviderRetryableError,
    RunHooks,
    extension_for,
)
from providers.comfyui_pool import ComfyPool, ComfyServer
from providers.comfyui_workflows import ComfyConfig, ComfyWorkflow, fill, output_files
from providers.upstream import PollSchedule, download, error_for_status, json_body, send

NAME = "comfyui"
FALLBACK_TYPES = {"image": "image/png", "video": "video/mp4"}
ENDINGS = frozenset({"execution_success", "execution_error", "execution_interrupted"})
T = TypeVar("T")


class ServerGone(ProviderRetryableError):
    """The job's server stopped answering and failed its health check (which took it out of the
    pool): the retry runs elsewhere."""


class PromptLost(ProviderRetryableError):
    """The server holds the prompt in neither its history nor its queue (it restarted)."""


def node_error(body: dict[str, Any]) -> ProviderError:
    """A refused graph (`POST /prompt` 400) as an invalid request naming the node and input."""
    error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
    nodes: dict[str, Any] = body["node_errors"] if isinstance(body.get("node_errors"), dict) else {}
    for node_id, found in nodes.items():
        errors = [e for e in (found or {}).get("errors") or [] if isinstance(e, dict)]
        first = errors[0] if errors else {}
        kind = str(first.get("type") or "invalid")
        field_name = str((first.get("extra_info") or {}).get("input_name") or "an input")
        where = f"The workflow's node {node_id} ({found.get('class_type', 'unknown')})"
        if kind == "value_not_in_list":
            public = f"{where} names a {field_name} the ComfyUI server does not have (a model?)."
        else:
            public = f"{where} refused its input {field_name} ({kind})."
        detail = f"{str(first.get('message'))[:120]}: {str(first.get('details') or '')[:300]}"
        return ProviderInvalidRequestError(f"comfyui: {public} {detail}", public=public)
    kind = str(error.get("type") or "invalid_prompt")
    return ProviderInvalidRequestError(
        f"comfyui refused the graph: {kind}: {str(error.get('message'))[:200]}",
        public=f"The ComfyUI server refused the workflow ({kind}).",
    )


def execution_error(entry: dict[str, Any]) -> ProviderError:
    """A prompt that ended in error: out of memory is worth another try, the rest is not."""
    messages = (entry.get("status") or {}).get("messages") or []
    for item in messages:
        if isinstance(item, list) and len(item) == 2 and item[0] == "execution_error":
            data = item[1] if isinstance(item[1], dict) else {}
            node = f"{data.get('node_type')} (node {data.get('node_id')})"
            text = f"{node}: {data.get('exception_type')}"
            message = (
                f"comfyui: the prompt failed at {text}: {str(data.get('exception_message'))[:200]}"
            )
            if "OutOfMemory" in str(data.get("exception_type")):
                return ProviderRetryableError(message)
            return ProviderRejectedError(message)
        if isinstance(item, list) and item and item[0] == "execution_interrupted":
            return ProviderRejectedError("comfyui: the prompt was interrupted on the server")
    return ProviderRejectedError("comfyui: the prompt failed")


class ProgressSocket:
    """The server's `/ws` for one client id: per-step progress of the prompts that client sent."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.closed = False

    @classmethod
    async def open(cls, server: ComfyServer, client_id: str) -> ProgressSocket | None:
        url = server.url.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
        try:
            return cls(await connect(url, open_timeout=5, max_size=2**24))
        except (OSError, TimeoutError, WebSocketException):
            return None  # progress then comes from polling alone

    async def listen(self, prompt_id: str, hooks: RunHooks, within: float) -> None:
        """Report progress for up to `within` seconds; back sooner when the prompt ended (the
        caller then reads the history) or the socket closed."""
        try:
            async with asyncio.timeout(within):
                async for message in self._ws:
                    if isinstance(message, bytes):
                        continue  # a preview image
                    body = orjson.loads(message)
                    data = body.get("data") if isinstance(body, dict) else None
                    if not isinstance(data, dict) or data.get("prompt_id", prompt_id) != prompt_id:
                        continue  # not a message about our prompt
                    kind = body.get("type")
                    if kind == "progress" and data.get("max"):
                        await hooks.progress(10 + int(80 * data["value"] / data["max"]))
                    elif kind in ENDINGS or (kind == "executing" and data.get("node") is None):
                        return  # the prompt ended: the caller reads its history
                self.closed = True
        except TimeoutError:
            return
        except (OSError, WebSocketException, orjson.JSONDecodeError):
            self.closed = True

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()


def _task(task_id: str | None) -> tuple[str, str] | None:
    server, sep, prompt_id = (task_id or "").rpartition("|")
    return (server, prompt_id) if sep and server and prompt_id else None


class ComfyUIProvider:
    name = NAME

    def __init__(
        self,
        client: httpx.AsyncClient,
        config: ComfyConfig,
        pool: ComfyPool,
        *,
        poll_initial_seconds: float = 1.0,
        poll_max_seconds: float = 5.0,
    ) -> None:
        self._client = client
        self._config = config
        self._pool = pool
        self._poll = (poll_initial_seconds, poll_max_seconds)

    async def _call(
        self,
        server: ComfyServer,
        method: str,
        path: str,
        *,
        refused: Callable[[dict[str, Any]], ProviderError] | None = None,
        **kwargs: Any,
    ) -> Any:
        """One call and its JSON answer; `refused` reads a 400's body (else the status says)."""
        response = await send(self._client, NAME, method, server.url + path, **kwargs)
        if response.status_code == 400 and refused is not None:
            raise refused(json_body(response))
        if response.status_code >= 400:
            raise error_for_status(NAME, response, "")
        return orjson.loads(response.content) if response.content else {}

    async def _guarded(self, server: ComfyServer, call: Callable[[], Awaitable[T]]) -> T:
        """A call to the job's server; its failure, with the server failing its health check
        too, is the server gone (a blip on a live server is the call's own error)."""
        try:
            return await call()
        except ProviderRetryableError as exc:
            if await self._pool.check(server):
                raise
            raise ServerGone(f"comfyui server {server.url} stopped answering") from exc

    async def _history(self, server: ComfyServer, prompt_id: str) -> dict[str, Any] | None:
        found = await self._guarded(
            server, lambda: self._call(server, "GET", f"/history/{prompt_id}")
        )
        entry = found.get(prompt_id) if isinstance(found, dict) else None
        return entry if isinstance(entry, dict) else None

    async def _queued(self, server: ComfyServer, prompt_id: str) -> str | None:
        """`running` or `pending` when the server's queue holds the prompt."""
        queue = await self._guarded(server, lambda: self._call(server, "GET", "/queue"))
        for state in ("running", "pending"):
            for item in queue.get(f"queue_{state}") or []:
                if isinstance(item, list) and len(item) > 1 and item[1] == prompt_id:
                    return state
        return None

    async def _upload(self, server: ComfyServer, request: GenerationRequest) -> str | None:
        file = request.files.get("image") or request.files.get("input_reference")
        if file is None:
            return None
        # Named by us (the tenant's file name goes nowhere near the server's input folder).
        name = f"mediagate-{request.job_id}.{extension_for(file.content_type)}"
        answer = await self._call(
            server,
            "POST",
            "/upload/image",
            files={"image": (name, file.data, file.content_type)},
            data={"type": "input", "overwrite": "true"},
        )
        subfolder = str(answer.get("subfolder") or "")
        stored = str(answer.get("name") or name)
        return f"{subfolder}/{stored}" if subfolder else stored

    async def _submit(
        self,
        server: ComfyServer,
        workflow: ComfyWorkflow,
        request: GenerationRequest,
        prompt_id: str,
        client_id: str,
    ) -> None:
        graph = fill(workflow, request, await self._upload(server, request))
        body = {"prompt": graph, "prompt_id": prompt_id, "client_id": client_id}
        await self._guarded(
            server,
            lambda: self._call(server, "POST", "/prompt", json=body, refused=node_error),
        )

    async def _follow(
        self, server: ComfyServer, prompt_id: str, socket: ProgressSocket | None, hooks: RunHooks
    ) -> dict[str, Any]:
        """Until the prompt is in the server's history; lost from both history and queue (the
        server restarted) is the server gone for this job."""
        schedule = PollSchedule(*self._poll)
        while True:
            entry = await self._history(server, prompt_id)
            if entry is None and await self._queued(server, prompt_id) is None:
                entry = await self._history(server, prompt_id)  # it may have just finished
                if entry is None:
                    raise PromptLost(f"comfyui server {server.url} lost the prompt")
            if entry is not None:
                if (entry.get("status") or {}).get("status_str") == "error":
                    raise execution_error(entry)
                return entry
            if socket is not None and not socket.closed:
                await socket.listen(prompt_id, hooks, self._poll[1])
            else:
                await hooks.progress(10)
                await schedule.wait()

    async def _run(
        self,
        server: ComfyServer,
        workflow: ComfyWorkflow,
        request: GenerationRequest,
        pinned: tuple[str, str] | None,
        hooks: RunHooks,
    ) -> dict[str, Any]:
        prompt_id = pinned[1] if pinned and pinned[0] == server.url else None
        # Ours, from an earlier attempt: ComfyUI would run it twice if sent again.
        if prompt_id is not None and (
            await self._history(server, prompt_id) is not None
            or await self._queued(server, prompt_id)
        ):
            return await self._follow(server, prompt_id, None, hooks)
        prompt_id = prompt_id or str(uuid.uuid4())
        client_id = uuid.uuid4().hex
        socket = await ProgressSocket.open(server, client_id)
        try:
            await hooks.task_started(f"{server.url}|{prompt_id}")
            await self._submit(server, workflow, request, prompt_id, client_id)
            await hooks.progress(5)
            return await self._follow(server, prompt_id, socket, hooks)
        finally:
            if socket is not None:
                await socket.close()

    async def generate(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        workflow = self._config.workflows.get(request.model)
        if workflow is None:
            raise ProviderInvalidRequestError(f"comfyui has no workflow {request.model!r}")
        pinned = _task(request.task_id)
        deadline = (
            None
            if request.deadline_seconds is None
            else time.monotonic() + request.deadline_seconds
        )
        chosen: ComfyServer | None = None
        try:
            async with self._pool.slot(
                request.job_id, prefer=pinned[0] if pinned else None, deadline=deadline
            ) as server:
                chosen = server
                entry = await self._run(server, workflow, request, pinned, hooks)
        except (ServerGone, PromptLost):
            await hooks.task_started(None)  # nothing of it can be reached: start anew
            raise
        files = output_files(workflow, entry)
        if not files:
            raise ProviderRejectedError("comfyui: the workflow saved no output")
        await hooks.progress(95)
        assert chosen is not None
        for file in files:
            url = str(httpx.URL(chosen.url + "/view", params=file))
            yield await download(
                self._client, NAME, url, fallback_type=FALLBACK_TYPES[request.type]
            )

    async def cancel(self, task_id: str) -> None:
        """Dequeue the prompt if it waits; interrupt it (and only it) if it runs."""
        found = _task(task_id)
        server = None if found is None else self._pool.server(found[0])
        if found is None or server is None:
            return
        state = await self._queued(server, found[1])
        if state == "pending":
            await self._call(server, "POST", "/queue", json={"delete": [found[1]]})
        elif state == "running":
            await self._call(server, "POST", "/interrupt", json={"prompt_id": found[1]})

    async def aclose(self) -> None:
        return None
