"""`/dashboard`: the operator's pages, server-rendered (Jinja) with htmx for the actions and our
own Server-Sent Events for live updates; no CDN, no build step.

Signing in takes the admin key once, at a form; the session is then a signed, encrypted cookie
(HttpOnly, SameSite=Strict, Secure behind an https public URL) holding a CSRF token that every
action must send back. Failed sign-ins count against the address like failed API keys."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotAuthorizedException
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.params import Body
from litestar.response import Redirect, ServerSentEvent, Template
from litestar.response.sse import ServerSentEventMessage
from litestar.static_files import create_static_files_router

from app.dashboard import service
from app.http.dependencies import client_address
from app.http.state import api_state
from app.jobs import service as job_service
from app.media.responses import media_url
from app.operations import service as operations
from app.platform.errors import MediagateError
from app.platform.limits import SignIn, attempt
from app.platform.redis_keys import dashboard_session_key
from app.platform.resources import Resources
from app.platform.settings import Settings
from app.platform.vocabulary import ACTIVE_STATUSES, JobStatus, Priority
from app.webhooks import service as webhooks

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
LIVE_SECONDS = 2.0
"""How often the live parts of a page are sent again."""

ServerRequest = Request[Any, Any, Any]
FORM = Body(media_type=RequestEncodingType.URL_ENCODED)
"""A form post's fields (the sign-in form's and the actions', with their CSRF token)."""


def session_config(settings: Settings) -> CookieBackendConfig:
    """The session cookie, keyed by a key derived from the secret that signs media links."""
    key = hmac.new(settings.signing_secret, b"mediagate dashboard session", hashlib.sha256)
    return CookieBackendConfig(
        secret=key.digest(),
        key="mg_dashboard",
        path="/dashboard",
        max_age=settings.dashboard_session_seconds,
        httponly=True,
        samesite="strict",
        secure=bool(settings.public_url and settings.public_url.startswith("https://")),
        exclude=[r"^/(?!dashboard|$)"],  # the API never reads or writes a session
    )


def _admin_mark(settings: Settings) -> str:
    """What a session remembers of the admin key it was opened with (a keyed hash, not the key):
    once the admin key changes, every session opened with the old one has ended."""
    mark = hmac.new(settings.signing_secret, (settings.admin_key or "").encode(), hashlib.sha256)
    return mark.hexdigest()[:32]


async def _end_stale_session(request: ServerRequest) -> None:
    """Before every dashboard request: a session past its lifetime, opened with another admin
    key, or ended at sign-out (its id no longer in Redis, so a cookie saved before the sign-out
    opens nothing) is cleared, and the request is not signed in."""
    if "session" not in request.scope or not request.session.get("admin"):
        return
    resources = api_state(request).resources
    settings = resources.settings
    session = request.session
    opened = session.get("at")
    session_id = session.get("sid")
    live = (
        isinstance(opened, int | float)
        and 0 <= time.time() - opened < settings.dashboard_session_seconds
        and isinstance(session_id, str)
        and hmac.compare_digest(str(session.get("ak", "")), _admin_mark(settings))
        and bool(
            await resources.redis.exists(
                dashboard_session_key(settings.redis_namespace, session_id)
            )
        )
    )
    if not live:
        request.set_session({})  # signed out; Litestar's clear_session leaves no dict to read


def _signed_in(request: ServerRequest) -> bool:
    return bool(request.session.get("admin")) if "session" in request.scope else False


def _require(request: ServerRequest) -> None:
    if not _signed_in(request):
        raise NotAuthorizedException("sign in first")


def _check_csrf(request: ServerRequest, sent: str | None) -> None:
    expected = str(request.session.get("csrf", ""))
    given = sent or request.headers.get("x-csrf-token") or ""
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise NotAuthorizedException("the form is stale: reload the page")


def _context(request: ServerRequest, **values: Any) -> dict[str, Any]:
    return {"csrf": request.session.get("csrf", ""), "statuses": list(JobStatus), **values}


async def _overview_parts(
    request: ServerRequest, resources: Resources, filters: service.JobFilter
) -> dict[str, Any]:
    pool = await operations.snapshot(resources)
    workers = await operations.workers(resources)
    jobs = await service.jobs(resources, filters)
    return _context(
        request,
        pool=pool,
        priorities=[str(p) for p in Priority],
        workers=workers,
        jobs=jobs,
        filters=filters,
        now=time.time(),
    )


@get("/login", name="dashboard-login", include_in_schema=False)
async def login_form(request: ServerRequest) -> Template | Redirect:
    if _signed_in(request):
        return Redirect("/dashboard")
    return Template("login.html", context={"error": None})


@post("/login", include_in_schema=False, status_code=303)
async def login(
    request: ServerRequest,
    resources: Resources,
    data: dict[str, str] = FORM,
) -> Response[Any]:
    settings = resources.settings
    ns = settings.redis_namespace
    # Counted apart from tenants' failures: a tenant guessing keys from the operator's address
    # (behind a proxy, everyone's) does not lock the operator out of the dashboard.
    counted = await attempt(
        resources.redis,
        ns,
        SignIn.DASHBOARD,
        client_address(request),
        settings.auth_failures_per_minute,
        "sign-ins",
    )
    given = data.get("admin_key", "").encode()
    expected = (settings.admin_key or "").encode()
    if not expected or not hmac.compare_digest(given, expected):
        return Template(
            "login.html", context={"error": "That is not the admin key."}, status_code=401
        )
    if counted is not None:
        await counted.succeeded()
    session_id = secrets.token_urlsafe(18)
    await resources.redis.set(
        dashboard_session_key(ns, session_id), b"1", ex=settings.dashboard_session_seconds
    )
    request.set_session(
        {
            "admin": True,
            "csrf": secrets.token_urlsafe(24),
            "sid": session_id,
            "at": int(time.time()),
            "ak": _admin_mark(settings),
        }
    )
    return Redirect("/dashboard", status_code=303)


@post("/logout", include_in_schema=False, status_code=303)
async def logout(
    request: ServerRequest,
    resources: Resources,
    data: dict[str, str] = FORM,
) -> Redirect:
    _require(request)
    _check_csrf(request, data.get("_csrf"))
    session_id = str(request.session.get("sid", ""))
    await resources.redis.delete(
        dashboard_session_key(resources.settings.redis_namespace, session_id)
    )
    request.clear_session()
    return Redirect("/dashboard/login", status_code=303)


@get("/", name="dashboard", include_in_schema=False)
async def overview(
    request: ServerRequest,
    resources: Resources,
    status: str | None = None,
    model: str | None = None,
    key: str | None = None,
    since: str | None = None,
) -> Template | Redirect:
    if not _signed_in(request):
        return Redirect("/dashboard/login")
    filters = service.JobFilter.of(status, model, key, since)
    context = await _overview_parts(request, resources, filters)
    return Template("overview.html", context={**context, "query": request.url.query})


@get("/jobs/{job_id:str}", include_in_schema=False)
async def job_page(
    request: ServerRequest, job_id: str, resources: Resources
) -> Template | Redirect:
    if not _signed_in(request):
        return Redirect("/dashboard/login")
    page = await service.job_page(resources, job_id)
    links = {m.id: media_url(request, resources.settings, m.id) for m in page.outputs}
    flash = request.session.pop("flash", None)
    return Template(
        "job.html",
        context=_context(
            request,
            page=page,
            links=links,
            active=page.job.status in ACTIVE_STATUSES,
            flash=flash,
        ),
    )


@get("/keys", include_in_schema=False)
async def keys_page(request: ServerRequest, resources: Resources) -> Template | Redirect:
    if not _signed_in(request):
        return Redirect("/dashboard/login")
    rows = await service.keys(resources)
    return Template(
        "keys.html",
        context=_context(request, rows=rows, default_rpm=resources.settings.requests_per_minute),
    )


@get("/providers", include_in_schema=False)
async def providers_page(request: ServerRequest, resources: Resources) -> Template | Redirect:
    if not _signed_in(request):
        return Redirect("/dashboard/login")
    rows = await service.providers(resources)
    return Template("providers.html", context=_context(request, rows=rows))


async def _act(
    request: ServerRequest, sent: str | None, job_id: str, action: Callable[[], Awaitable[Any]]
) -> Redirect:
    """Run an action (after the session and its CSRF token are checked), then show the job; an
    action refused (a job that already ended, say) says why on the job's page."""
    _require(request)
    _check_csrf(request, sent)
    try:
        await action()
    except MediagateError as exc:
        request.session["flash"] = exc.message
    return Redirect(f"/dashboard/jobs/{job_id}", status_code=303)


@post("/jobs/{job_id:str}/cancel", include_in_schema=False, status_code=303)
async def cancel_job(
    request: ServerRequest,
    job_id: str,
    resources: Resources,
    data: dict[str, str] = FORM,
) -> Redirect:
    return await _act(
        request, data.get("_csrf"), job_id, lambda: job_service.cancel(resources, None, job_id)
    )


@post("/jobs/{job_id:str}/retry", include_in_schema=False, status_code=303)
async def retry_job(
    request: ServerRequest,
    job_id: str,
    resources: Resources,
    data: dict[str, str] = FORM,
) -> Redirect:
    return await _act(
        request, data.get("_csrf"), job_id, lambda: job_service.retry(resources, job_id)
    )


@post("/jobs/{job_id:str}/webhooks/{delivery_id:str}/resend", include_in_schema=False)
async def resend_webhook(
    request: ServerRequest,
    job_id: str,
    delivery_id: str,
    resources: Resources,
    data: dict[str, str] = FORM,
) -> Redirect:
    return await _act(
        request,
        data.get("_csrf"),
        job_id,
        lambda: webhooks.resend(resources, None, job_id, delivery_id),
    )


@get("/stream", include_in_schema=False)
async def stream(
    request: ServerRequest,
    resources: Resources,
    state: State,
    status: str | None = None,
    model: str | None = None,
    key: str | None = None,
    since: str | None = None,
    job: str | None = None,
) -> ServerSentEvent:
    """The live parts of a page, rendered again every LIVE_SECONDS: the pool and the job list
    of the overview, or one job's state. A part is sent only when it changed: the page swaps
    what it receives, and a link swapped under the pointer between a press and its release
    loses the click."""
    _require(request)
    engine = request.app.template_engine
    assert engine is not None
    filters = service.JobFilter.of(status, model, key, since)
    deadline = time.monotonic() + resources.settings.sse_max_seconds

    def render(name: str, context: dict[str, Any]) -> str:
        html = engine.get_template(name).render(**context)
        return " ".join(line.strip() for line in html.splitlines())  # one `data:` line

    async def parts() -> AsyncIterator[ServerSentEventMessage]:
        sent: dict[str, str] = {}
        while time.monotonic() < deadline:
            if job is not None:
                page = await service.job_page(resources, job)
                context = _context(request, page=page, active=page.job.status in ACTIVE_STATUSES)
                rendered = {"job": render("_job_state.html", context)}
            else:
                context = await _overview_parts(request, resources, filters)
                rendered = {
                    "pool": render("_pool.html", context),
                    "jobs": render("_jobs.html", context),
                }
            changed = [part for part, html in rendered.items() if sent.get(part) != html]
            for part in changed:
                sent[part] = rendered[part]
                yield ServerSentEventMessage(event=part, data=rendered[part])
            if not changed:
                # A comment (no event): the connection stays busy, and a gone page is noticed.
                yield ServerSentEventMessage(comment="unchanged", data=None)
            await asyncio.sleep(LIVE_SECONDS)

    return ServerSentEvent(parts())


def dashboard_router() -> Router:
    """The pages under /dashboard (the app adds `session_config`'s middleware, which leaves every
    other path alone)."""
    return Router(
        path="/dashboard",
        before_request=_end_stale_session,
        route_handlers=[
            login_form,
            login,
            logout,
            overview,
            job_page,
            keys_page,
            providers_page,
            cancel_job,
            retry_job,
            resend_webhook,
            stream,
            create_static_files_router(
                path="/static", directories=[HERE / "static"], include_in_schema=False
            ),
        ],
        include_in_schema=False,
    )
