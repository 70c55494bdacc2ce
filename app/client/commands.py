"""The client commands of `mediagate`: `generate image|video|speech`, `jobs list|get|watch|cancel|
download` and `usage`, talking to any mediagate over HTTP (`--url`/MEDIAGATE_URL,
`--key`/MEDIAGATE_API_KEY). Live progress and tables through rich; `--json` for scripts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.prompt import Confirm
from rich.table import Column, Table

from app.client.api import Client, ClientError, clean
from app.platform.vocabulary import JobStatus

DEFAULT_URL = "http://127.0.0.1:8000"

Url = Annotated[str, typer.Option("--url", envvar="MEDIAGATE_URL", help="the mediagate to talk to")]
Key = Annotated[
    str | None,
    typer.Option("--key", envvar="MEDIAGATE_API_KEY", help="a virtual API key", show_default=False),
]
Json = Annotated[bool, typer.Option("--json", help="print JSON (for scripts) instead of tables")]
Out = Annotated[Path, typer.Option("--out", "-o", help="folder to save outputs in")]
Model = Annotated[str | None, typer.Option(help="model or alias (default: the local model)")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="submit, print the job and return at once")]

generate_app = typer.Typer(help="submit a job, follow its progress live, save its outputs")
jobs_app = typer.Typer(help="your jobs: list, get, watch, cancel, download")

out = Console()
err = Console(stderr=True)


@contextmanager
def _client(url: str, key: str | None) -> Iterator[Client]:
    try:
        with Client(url, key) as client:
            yield client
    except ClientError as exc:
        err.print(f"[red]mediagate:[/red] {shown(exc)}", highlight=False)
        raise typer.Exit(1) from None


def shown(value: Any) -> str:
    """A server's value as rich prints it, and only as text: no control characters (terminal
    escapes), no markup (`[link=...]`) of its own."""
    return escape(clean(value))


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _dollars(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}".rstrip("0").rstrip(".")


def _status(job: dict[str, Any]) -> str:
    colours: dict[str, str] = {
        JobStatus.SUCCEEDED: "green",
        JobStatus.FAILED: "red",
        JobStatus.CANCELED: "yellow",
        JobStatus.RUNNING: "cyan",
    }
    status = str(job["status"])
    return f"[{colours.get(status, 'white')}]{shown(status)}[/]"


def follow(client: Client, job: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Follow the job's events to its end with a live bar (state, %, elapsed, attempts); on
    Ctrl-C ask whether to cancel it. Returns the job as it ended."""
    progress = Progress(
        TextColumn("[bold]{task.fields[job_id]}"),
        TextColumn("{task.fields[state]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[extra]}"),
        console=err,
        disable=quiet,
        transient=False,
    )
    try:
        with progress:
            task = progress.add_task(
                "job", total=100, job_id=shown(job["id"]), state=_status(job), extra=""
            )
            for event in client.follow(job["id"]):
                job = event.job
                attempts = int(job.get("attempts") or 0)
                extra = f"attempt {attempts}" if attempts > 1 else ""
                if client.reconnects:
                    extra = f"{extra} reconnected x{client.reconnects}".strip()
                progress.update(
                    task, completed=int(job.get("progress") or 0), state=_status(job), extra=extra
                )
    except KeyboardInterrupt:
        job_id = shown(job["id"])
        err.print(f"\nStopped following {job_id}; the job itself goes on.")
        if Confirm.ask(f"Cancel job {job_id}?", default=False, console=err):
            job = client.cancel(job["id"])
            err.print(f"canceled {job_id}")
            raise typer.Exit(130) from None
        err.print(f"Follow it again with: mediagate jobs watch {job_id}")
        raise typer.Exit(130) from None
    return job


def _finish(client: Client, job: dict[str, Any], folder: Path, as_json: bool) -> None:
    """Save a succeeded job's outputs and print them; say why a failed one failed (exit 1)."""
    succeeded = job["status"] == JobStatus.SUCCEEDED
    paths = client.download(job, folder) if succeeded else []
    if as_json:
        _print_json({"job": job, "files": [str(p) for p in paths], "reconnects": client.reconnects})
    else:
        cost = (job.get("cost") or {}).get("actual")
        for path in paths:
            out.print(escape(str(path)), highlight=False)
        if succeeded:
            err.print(
                f"[green]done[/green] {shown(job['id'])} cost {_dollars(cost)}", highlight=False
            )
        else:
            error = job.get("error") or {}
            err.print(
                f"{_status(job)} {shown(job['id'])}: {shown(error.get('message', ''))} "
                f"({shown(error.get('code'))})"
            )
    if not succeeded:
        raise typer.Exit(1)


LOCAL_MODELS = {"image": "local-image", "video": "local-video", "speech": "local-speech"}


def _generate(
    url: str,
    key: str | None,
    kind: str,
    model: str | None,
    values: dict[str, Any],
    folder: Path,
    as_json: bool,
    no_wait: bool,
) -> None:
    """Submit a `kind` job (the local model unless `model` names one) with the options given."""
    inputs = {name: value for name, value in values.items() if value is not None}
    body = {"type": kind, "model": model or LOCAL_MODELS[kind], "input": inputs}
    with _client(url, key) as client:
        job = client.submit(body)
        if no_wait:
            _print_json(job) if as_json else out.print(shown(job["id"]))
            return
        if not as_json:
            estimate = (job.get("cost") or {}).get("estimate")
            estimated = _dollars(estimate)
            err.print(
                f"submitted {shown(job['id'])} ({shown(job['model'])}, est. {estimated})",
                highlight=False,
            )
        else:
            err.print(shown(job["id"]))  # scripts and Ctrl-C handlers can tell which job
        job = follow(client, job, quiet=as_json)
        _finish(client, job, folder, as_json)


@generate_app.command("image")
def generate_image(
    prompt: Annotated[str, typer.Argument(help="what to draw")],
    model: Model = None,
    size: Annotated[str | None, typer.Option(help="e.g. 1024x1024")] = None,
    n: Annotated[int | None, typer.Option(help="how many images")] = None,
    quality: Annotated[str | None, typer.Option(help="e.g. standard, hd, low, high")] = None,
    seed: Annotated[int | None, typer.Option(help="seed (models that take one)")] = None,
    output: Out = Path("."),
    url: Url = DEFAULT_URL,
    key: Key = None,
    as_json: Json = False,
    no_wait: NoWait = False,
) -> None:
    """Make images from a prompt."""
    values = {"prompt": prompt, "size": size, "n": n, "quality": quality, "seed": seed}
    _generate(url, key, "image", model, values, output, as_json, no_wait)


@generate_app.command("video")
def generate_video(
    prompt: Annotated[str, typer.Argument(help="what to film")],
    model: Model = None,
    seconds: Annotated[int | None, typer.Option(help="length in seconds")] = None,
    size: Annotated[str | None, typer.Option(help="e.g. 1280x720")] = None,
    output: Out = Path("."),
    url: Url = DEFAULT_URL,
    key: Key = None,
    as_json: Json = False,
    no_wait: NoWait = False,
) -> None:
    """Make a video from a prompt."""
    values = {"prompt": prompt, "seconds": seconds, "size": size}
    _generate(url, key, "video", model, values, output, as_json, no_wait)


@generate_app.command("speech")
def generate_speech(
    text: Annotated[str, typer.Argument(help="what to say")],
    model: Model = None,
    voice: Annotated[str, typer.Option(help="voice")] = "alloy",
    format: Annotated[str | None, typer.Option("--format", help="mp3, wav, opus, flac")] = None,
    output: Out = Path("."),
    url: Url = DEFAULT_URL,
    key: Key = None,
    as_json: Json = False,
    no_wait: NoWait = False,
) -> None:
    """Read a text aloud."""
    values = {"input": text, "voice": voice, "format": format}
    _generate(url, key, "speech", model, values, output, as_json, no_wait)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="only jobs in this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="how many, newest first")] = 20,
    url: Url = DEFAULT_URL,
    key: Key = None,
    as_json: Json = False,
) -> None:
    """Your jobs, newest first."""
    with _client(url, key) as client:
        jobs = client.jobs(status, limit)
    if as_json:
        _print_json(jobs)
        return
    table = Table("type", "model", "status", "progress", "created", "cost")
    table.columns.insert(0, Column("id", no_wrap=True))
    for job in jobs:
        cost = job.get("cost") or {}
        table.add_row(
            shown(job["id"]),
            shown(job["type"]),
            shown(job["model"]),
            _status(job),
            f"{shown(job['progress'])}%",
            shown(job["created_at"]),
            _dollars(
                cost.get("actual") if cost.get("actual") is not None else cost.get("estimate")
            ),
        )
    out.print(table)


@jobs_app.command("get")
def jobs_get(job_id: str, url: Url = DEFAULT_URL, key: Key = None, as_json: Json = False) -> None:
    """One job."""
    with _client(url, key) as client:
        job = client.job(job_id)
    if as_json:
        _print_json(job)
        return
    table = Table(show_header=False, box=None)
    for name in ("id", "type", "model", "served_by", "status", "progress", "attempts"):
        table.add_row(name, _status(job) if name == "status" else shown(job.get(name)))
    if job.get("queue"):
        place = job["queue"]
        eta = place.get("eta_seconds")
        table.add_row(
            "queue", f"#{shown(place['position'])}" + (f", starts in ~{shown(eta)}s" if eta else "")
        )
    cost = job.get("cost") or {}
    table.add_row(
        "cost", f"est. {_dollars(cost.get('estimate'))}, actual {_dollars(cost.get('actual'))}"
    )
    if job.get("error"):
        table.add_row("error", f"{shown(job['error']['code'])}: {shown(job['error']['message'])}")
    for output in job.get("outputs") or []:
        table.add_row(
            f"output {shown(output['index'])}",
            f"{shown(output['content_type'])} {shown(output['bytes'])} B",
        )
    out.print(table)


@jobs_app.command("watch")
def jobs_watch(
    job_id: str,
    output: Out = Path("."),
    url: Url = DEFAULT_URL,
    key: Key = None,
    as_json: Json = False,
) -> None:
    """Follow a job live until it ends, then save its outputs."""
    with _client(url, key) as client:
        job = follow(client, client.job(job_id), quiet=as_json)
        _finish(client, job, output, as_json)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: str, url: Url = DEFAULT_URL, key: Key = None, as_json: Json = False
) -> None:
    """Cancel a queued or running job."""
    with _client(url, key) as client:
        job = client.cancel(job_id)
    _print_json(job) if as_json else out.print(f"{shown(job['id'])} {_status(job)}")


@jobs_app.command("download")
def jobs_download(
    job_id: str,
    output: Out = Path("."),
    url: Url = DEFAULT_URL,
    key: Key = None,
    as_json: Json = False,
) -> None:
    """Save a finished job's outputs."""
    with _client(url, key) as client:
        paths = client.download(client.job(job_id), output)
    if as_json:
        _print_json([str(p) for p in paths])
    else:
        for path in paths:
            out.print(escape(str(path)), highlight=False)


def usage(url: Url = DEFAULT_URL, key: Key = None, as_json: Json = False) -> None:
    """What your key stores and spends, against its quotas and budgets."""
    with _client(url, key) as client:
        found = client.usage()
    if as_json:
        _print_json(found)
        return
    table = Table("kind", "bytes", "objects", "written", "deleted", title="storage")
    for kind, row in found["by_type"].items():
        table.add_row(
            shown(kind),
            f"{row['bytes']:,}",
            f"{row['objects']:,}",
            f"{row['bytes_written']:,}",
            f"{row['bytes_deleted']:,}",
        )
    table.add_row("[bold]total", f"[bold]{found['bytes']:,}", f"[bold]{found['objects']:,}", "", "")
    out.print(table)
    spend = found["spend"]
    money = Table("today", "this month", "lifetime", "budget / month", "warn at", title="spend")
    money.add_row(
        _dollars(spend["today"]),
        _dollars(spend["this_month"]),
        _dollars(spend["lifetime"]),
        _dollars(spend["max_spend_per_month"]),
        _dollars(spend["soft_spend_per_month"]),
    )
    out.print(money)
    quota = {k: v for k, v in found["quota"].items() if v is not None}
    if quota:
        shown_quota = ", ".join(f"{shown(k)}={shown(v)}" for k, v in quota.items())
        out.print("quota: " + shown_quota, highlight=False)
