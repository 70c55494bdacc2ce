"""A fault-injecting HTTP proxy in front of the moto S3 server: every request is forwarded, except
those a test asked to fail (by method and S3 operation), which get S3's own XML error. Lets the
tests break uploads part-way through and watch botocore's retries and our multipart aborts."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class S3Fault:
    method: str
    operation: str
    """`UploadPart` (PUT with partNumber), `PutObject` (PUT without), `CompleteMultipartUpload`."""
    times: int
    status: int = 500
    code: str = "InternalError"


def operation_of(request: Request) -> str:
    query = request.query_params
    if request.method == "PUT":
        return "UploadPart" if "partNumber" in query else "PutObject"
    if request.method == "POST" and "uploadId" in query:
        return "CompleteMultipartUpload"
    if request.method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    return request.method


class S3FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[S3Fault] = []
        self.seen: list[str] = []
        self.lock = threading.Lock()
        self.url = ""

    def fail(
        self, operation: str, times: int, status: int = 500, code: str = "InternalError"
    ) -> None:
        method = "POST" if operation.endswith("MultipartUpload") else "PUT"
        with self.lock:
            self.faults.append(S3Fault(method, operation, times, status, code))

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.seen.clear()

    def _fault_for(self, request: Request) -> S3Fault | None:
        operation = operation_of(request)
        with self.lock:
            self.seen.append(operation)
            for fault in self.faults:
                if fault.times > 0 and fault.operation == operation:
                    fault.times -= 1
                    return fault
        return None

    async def _forward(self, request: Request) -> Response:
        body = await request.body()  # read whole even when failing, as a real server would
        fault = self._fault_for(request)
        if fault is not None:
            xml = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{fault.code}</Code>"
                "<Message>injected by the test</Message></Error>"
            )
            return Response(xml, fault.status, media_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with httpx.AsyncClient(timeout=60) as client:
            upstream = await client.request(
                request.method,
                self.upstream + request.url.path,
                params=request.url.query,
                headers=headers,
                content=body,
            )
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        out.pop("content-encoding", None)
        if request.method == "HEAD":  # no body, but the object's size
            out["content-length"] = upstream.headers.get("content-length", "0")
        return Response(upstream.content, upstream.status_code, headers=out)

    def app(self) -> Starlette:
        methods = ["GET", "PUT", "POST", "DELETE", "HEAD"]
        return Starlette(routes=[Route("/{path:path}", self._forward, methods=methods)])
