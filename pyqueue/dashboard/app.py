"""The web dashboard: pages for people, a JSON API for applications.

Pages are rendered server-side by Jinja2 (autoescaped), then kept fresh by a
small script that polls the JSON API. Reads and actions go through
`pyqueue.Queue` and the monitoring views (see reads.py); nothing here decides
what a job may do: cancel and retry_dead are the SQL functions' to refuse.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from pyqueue.dashboard.reads import STATE_WORDS, STATUSES, Reads
from pyqueue.dashboard.security import CSRF_FIELD, Credentials, Guard, csrf_ok
from pyqueue.errors import InvalidArgument, JobNotFound, JobStateError, PyqueueError, first_line

HERE = Path(__file__).parent
Endpoint = Callable[[Request], Awaitable[Response]]


def when(value: str | None) -> str:
    """An ISO timestamp as the page shows it (the script formats it the same way)."""
    return value[:19].replace("T", " ") if value else ""


def age(seconds: float | None) -> str:
    """A duration in seconds, short: 12s, 4m 05s, 2h 03m."""
    if seconds is None:
        return ""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def pretty(value: Any) -> str:
    """JSON as a person reads it; the template escapes it like any other text."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pyqueue.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(when=when, age=age, first_line=first_line, pretty=pretty)
    env.globals.update(STATE_WORDS=STATE_WORDS, STATUSES=STATUSES)
    return Jinja2Templates(env=env)


def page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidArgument(f"page must be a whole number from 1, not {raw[:20]!r}")
    return int(raw)


def create_app(database_url: str, creds: Credentials | None = None) -> Starlette:
    """The dashboard over the pyqueue schema at `database_url`."""
    creds = creds or Credentials()
    csrf_token = secrets.token_urlsafe(32)  # one per process: forms and X-CSRF-Token
    views = templates()
    reads: Reads | None = None

    def db() -> Reads:
        assert reads is not None, "the dashboard's lifespan has not started"
        return reads

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal reads
        reads = Reads(database_url)
        try:
            yield
        finally:
            await run_in_threadpool(reads.close)

    def render(request: Request, name: str, **context: Any) -> Response:
        context.update(csrf_token=csrf_token, csrf_field=CSRF_FIELD, nav=name)
        return views.TemplateResponse(request, name, context)

    async def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(function, *args, **kwargs)

    # Pages ------------------------------------------------------------------

    async def overview(request: Request) -> Response:
        return render(request, "overview.html", queues=await call(db().queue_stats))

    async def job_list(request: Request) -> Response:
        queue = request.query_params.get("queue") or None
        status = request.query_params.get("status") or None
        search = request.query_params.get("q", "").strip()
        page = page_number(request)
        if search:
            if search.isdigit():
                try:
                    found = await call(db().job, int(search))
                    return RedirectResponse(f"/jobs/{found['id']}", status_code=303)
                except JobNotFound:
                    pass
            jobs, has_more = await call(db().jobs_with_key, search), False
            api_query = {"key": search}
        else:
            jobs, has_more = await call(db().jobs, status=status, queue=queue, page=page)
            api_query = {k: v for k, v in request.query_params.items() if k != "q" and v}
        return render(
            request,
            "jobs.html",
            jobs=jobs,
            page=page,
            has_more=has_more,
            queue=queue or "",
            status=status or "",
            search=search,
            queues=[row["queue"] for row in await call(db().queue_stats)],
            api_url="/api/jobs?" + urlencode(api_query),
            page_url=lambda n: "/jobs?" + urlencode({**api_query, "page": n}),
        )

    async def job_page(request: Request) -> Response:
        job = await call(db().job, request.path_params["job_id"])
        return render(request, "job.html", job=job)

    async def dead_page(request: Request) -> Response:
        page = page_number(request)
        dead, has_more = await call(db().dead_letters, page)
        return render(request, "dead.html", dead=dead, page=page, has_more=has_more)

    # JSON API ---------------------------------------------------------------

    async def api_queues(request: Request) -> Response:
        return JSONResponse({"queues": await call(db().queue_stats)})

    async def api_throughput(request: Request) -> Response:
        queue = request.query_params.get("queue") or None
        return JSONResponse({"minutes": await call(db().throughput, queue)})

    async def api_jobs(request: Request) -> Response:
        key = request.query_params.get("key")
        if key is not None:
            return JSONResponse({"jobs": await call(db().jobs_with_key, key), "has_more": False})
        page = page_number(request)
        jobs, has_more = await call(
            db().jobs,
            status=request.query_params.get("status") or None,
            queue=request.query_params.get("queue") or None,
            page=page,
        )
        return JSONResponse({"jobs": jobs, "page": page, "has_more": has_more})

    async def api_job(request: Request) -> Response:
        return JSONResponse(await call(db().job, request.path_params["job_id"]))

    async def api_dead(request: Request) -> Response:
        page = page_number(request)
        dead, has_more = await call(db().dead_letters, page)
        return JSONResponse({"dead": dead, "page": page, "has_more": has_more})

    # Actions: POST only, CSRF-checked; JSON for the API, a redirect for forms.

    def action(run: Callable[[int], dict[str, Any]], then: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            if not csrf_ok(request.headers, form.get(CSRF_FIELD, [None])[0], csrf_token):
                raise HTTPException(403, "missing or wrong CSRF token, or a cross-site request")
            outcome = await call(run, request.path_params["job_id"])
            if request.url.path.startswith("/api/"):
                return JSONResponse(outcome)
            return RedirectResponse(then.format(**outcome), status_code=303)

        return endpoint

    def cancel(job_id: int) -> dict[str, Any]:
        return {"id": job_id, "cancelled": db().queue.cancel(job_id)}

    def retry(job_id: int) -> dict[str, Any]:
        return {"id": job_id, "new_job": db().queue.retry_dead(job_id)}

    cancel_endpoint = action(cancel, "/jobs/{id}")
    retry_endpoint = action(retry, "/jobs/{new_job}")

    # Errors: the database's own message, as a page or as JSON ---------------

    async def error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            code, message = exc.status_code, str(exc.detail)
        elif isinstance(exc, JobNotFound):
            code, message = 404, str(exc)
        elif isinstance(exc, JobStateError):
            code, message = 409, str(exc)
        elif isinstance(exc, InvalidArgument):
            code, message = 400, str(exc)
        else:
            code, message = 503, f"database unavailable: {first_line(exc)}"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=code)
        response = render(request, "error.html", code=code, message=message)
        response.status_code = code
        return response

    routes = [
        Route("/", overview),
        Route("/jobs", job_list),
        Route("/jobs/{job_id:int}", job_page),
        Route("/jobs/{job_id:int}/cancel", cancel_endpoint, methods=["POST"]),
        Route("/jobs/{job_id:int}/retry", retry_endpoint, methods=["POST"]),
        Route("/dead", dead_page),
        Route("/api/queues", api_queues),
        Route("/api/throughput", api_throughput),
        Route("/api/jobs", api_jobs),
        Route("/api/jobs/{job_id:int}", api_job),
        Route("/api/jobs/{job_id:int}/cancel", cancel_endpoint, methods=["POST"]),
        Route("/api/jobs/{job_id:int}/retry", retry_endpoint, methods=["POST"]),
        Route("/api/dead", api_dead),
        Mount("/static", StaticFiles(packages=[("pyqueue.dashboard", "static")]), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, creds=creds)],
        exception_handlers={
            HTTPException: error,
            PyqueueError: error,
            psycopg.OperationalError: error,
        },
        lifespan=lifespan,
    )
