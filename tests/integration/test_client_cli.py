"""The client commands (`mediagate generate|jobs|usage`) against a real server, run as a user
runs them (a subprocess), through a loopback proxy that can drop a connection: a submit whose
answer was lost is retried under the same Idempotency-Key (one job), a progress stream cut
mid-way is resumed with Last-Event-ID, and Ctrl-C offers to cancel the job."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from tests.infra import ROOT, Stack, base_settings, running_stack


class Proxy:
    """Forwards loopback TCP to the API; cuts the first connection whose answer matches `cut`
    (after forwarding `keep` of it: False drops the answer, True forwards the piece first)."""

    def __init__(self, upstream_port: int, cut: bytes | None, keep: bool) -> None:
        self.upstream_port = upstream_port
        self.cut, self.keep = cut, keep
        self.cuts = 0
        self.url = ""

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, watch: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if watch and self.cut and not self.cuts and self.cut in data:
                    self.cuts += 1
                    if self.keep:
                        writer.write(data)
                        await writer.drain()
                    writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(
            self._pipe(reader, up_writer, False), self._pipe(up_reader, writer, True)
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Proxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server:
            yield self


def _env(url: str, key: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAGATE_")}
    return {
        **clean,
        "MEDIAGATE_URL": url,
        "MEDIAGATE_API_KEY": key,
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "160",  # as wide as a terminal: rich fits its tables to it
    }


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _port(stack: Stack) -> int:
    return int(stack.url.rsplit(":", 1)[1])


async def test_generate_saves_the_outputs_and_the_other_commands_read_them(
    pg_url: str, tmp_path: Path
) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=True) as stack:
        env = _env(stack.url, stack.new_key("cli"))
        code, out, err = await _cli(
            env,
            "generate",
            "image",
            "a red fox",
            "--size",
            "256x256",
            "--n",
            "2",
            "-o",
            str(tmp_path),
            "--json",
        )
        assert code == 0, err
        made = orjson.loads(out)
        job: dict[str, Any] = made["job"]
        files = [Path(p) for p in made["files"]]
        assert job["status"] == "succeeded" and len(files) == 2
        assert all(f.read_bytes().startswith(b"\x89PNG") for f in files)
        listed = orjson.loads((await _cli(env, "jobs", "list", "--json"))[1])
        assert [j["id"] for j in listed] == [job["id"]]
        code, table, _ = await _cli(env, "jobs", "list")
        assert code == 0 and job["id"] in table and "succeeded" in table
        code, shown, _ = await _cli(env, "jobs", "get", job["id"])
        assert code == 0 and "output 1" in shown
        again = tmp_path / "again"
        code, _, _ = await _cli(env, "jobs", "download", job["id"], "-o", str(again))
        assert code == 0 and len(list(again.iterdir())) == 2
        code, usage, _ = await _cli(env, "usage")
        assert code == 0 and "image" in usage and "this month" in usage
        speech = await _cli(env, "generate", "speech", "hello there", "-o", str(tmp_path))
        assert speech[0] == 0 and speech[1].strip().endswith(".mp3"), speech[2]
        code, _, err = await _cli(env, "jobs", "get", "job_nope")
        assert code == 1 and "No job found" in err
        code, _, err = await _cli({**env, "MEDIAGATE_API_KEY": ""}, "jobs", "list")
        assert code == 1 and "MEDIAGATE_API_KEY" in err


async def test_a_lost_submit_answer_is_retried_without_a_second_job(
    pg_url: str, tmp_path: Path
) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=True) as stack:
        env = _env(stack.url, stack.new_key("cli"))
        async with Proxy(_port(stack), b"HTTP/1.1 202", keep=False).running() as proxy:
            code, out, err = await _cli(
                {**env, "MEDIAGATE_URL": proxy.url},
                "generate",
                "image",
                "once",
                "-o",
                str(tmp_path),
                "--json",
            )
        assert code == 0, err
        assert proxy.cuts == 1  # the first answer never arrived; the retry got the same job
        listed = orjson.loads((await _cli(env, "jobs", "list", "--json"))[1])
        assert [j["id"] for j in listed] == [orjson.loads(out)["job"]["id"]]


async def test_a_dropped_stream_is_resumed_with_last_event_id(pg_url: str, tmp_path: Path) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=True) as stack:
        env = _env(stack.url, stack.new_key("cli"))
        async with Proxy(_port(stack), b"id: 1", keep=True).running() as proxy:
            code, out, err = await _cli(
                {**env, "MEDIAGATE_URL": proxy.url},
                "generate",
                "video",
                "waves",
                "--seconds",
                "2",
                "-o",
                str(tmp_path),
                "--json",
            )
        assert code == 0, err
        made = orjson.loads(out)
        assert proxy.cuts == 1 and made["reconnects"] >= 1
        assert made["job"]["status"] == "succeeded"
        assert made["job"]["outputs"][0]["bytes"] > 0 and made["files"][0].endswith(".mp4")


async def test_ctrl_c_asks_whether_to_cancel(pg_url: str, tmp_path: Path) -> None:
    # No worker: the job stays queued while the command follows it.
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        env = _env(stack.url, stack.new_key("cli"))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "generate",
            "image",
            "later",
            "--json",
            env=env,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None and proc.stdin is not None
        job_id = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode().strip()
        assert job_id.startswith("job_")
        await asyncio.sleep(1.0)  # following now
        proc.send_signal(signal.SIGINT)
        proc.stdin.write(b"y\n")
        await proc.stdin.drain()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 130, err
        assert b"Cancel job" in err
        _, out, _ = await _cli(env, "jobs", "get", job_id, "--json")
        assert orjson.loads(out)["status"] == "canceled"
