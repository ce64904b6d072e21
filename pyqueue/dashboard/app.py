"""The web dashboard: pages for people (pages.py), a JSON API for applications (api.py).

create_app puts what the endpoints share on `app.state`: the database reads
(opened by the lifespan), the templates, and the CSRF token of this process.
Every request passes the Guard first (guard.py: body limit, login, headers).
Reads and actions go through `pyqueue.Queue` and the monitoring views (see
reads.py); nothing here decides what a job may do.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pyqueue.dashboard import api, pages
from pyqueue.dashboard.auth import Credentials
from pyqueue.dashboard.guard import Guard
from pyqueue.dashboard.reads import Reads
from pyqueue.errors import InvalidArgument, JobNotFound, JobStateError, PyqueueError, first_line

ROUTES = [
    Route("/", pages.overview),
    Route("/jobs", pages.job_list),
    Route("/jobs/{job_id:int}", pages.job_page),
    Route("/jobs/{job_id:int}/cancel", api.cancel, methods=["POST"]),
    Route("/jobs/{job_id:int}/retry", api.retry, methods=["POST"]),
    Route("/queues/{queue}/pause", api.pause, methods=["POST"]),
    Route("/queues/{queue}/resume", api.resume, methods=["POST"]),
    Route("/dead", pages.dead_page),
    Route("/schedules", pages.schedules_page),
    Route("/api/queues", api.queues),
    Route("/api/throughput", api.throughput),
    Route("/api/jobs", api.jobs),
    Route("/api/jobs/{job_id:int}", api.job),
    Route("/api/jobs/{job_id:int}/cancel", api.cancel, methods=["POST"]),
    Route("/api/jobs/{job_id:int}/retry", api.retry, methods=["POST"]),
    Route("/api/queues/{queue}/pause", api.pause, methods=["POST"]),
    Route("/api/queues/{queue}/resume", api.resume, methods=["POST"]),
    Route("/api/dead", api.dead),
    Route("/api/schedules", api.schedules),
    Route("/metrics", api.metrics),
    Mount("/static", StaticFiles(packages=[("pyqueue.dashboard", "static")]), name="static"),
]


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.reads = Reads(app.state.database_url)
    try:
        yield
    finally:
        await run_in_threadpool(app.state.reads.close)
        app.state.reads = None


async def error(request: Request, exc: Exception) -> Response:
    """The database's own message, as a page or as JSON, with the status it means."""
    if isinstance(exc, HTTPException):
        code, message = exc.status_code, str(exc.detail)
    elif isinstance(exc, JobNotFound):
        code, message = 404, str(exc)
    elif isinstance(exc, JobStateError):
        code, message = 409, str(exc)
    elif isinstance(exc, InvalidArgument):
        code, message = 400, str(exc)
    elif isinstance(exc, psycopg.errors.InsufficientPrivilege):
        # The dashboard's login lacks a role or a queue grant for this.
        code, message = 403, first_line(exc).removeprefix("pyqueue: ")
    else:
        code, message = 503, f"database unavailable: {first_line(exc)}"
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=code)
    response = pages.render(request, "error.html", code=code, message=message)
    response.status_code = code
    return response


def create_app(database_url: str, creds: Credentials | None = None) -> Starlette:
    """The dashboard over the pyqueue schema at `database_url`.

    Without `creds`, a random token is required (creds.token of the Credentials
    made here is not reachable: pass your own to get in).
    """
    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(Guard, creds=creds or Credentials())],
        exception_handlers={
            HTTPException: error,
            PyqueueError: error,
            psycopg.OperationalError: error,
            psycopg.errors.InsufficientPrivilege: error,
        },
        lifespan=lifespan,
    )
    app.state.database_url = database_url
    app.state.csrf_token = secrets.token_urlsafe(32)  # one per process: forms and X-CSRF-Token
    app.state.views = pages.templates()
    app.state.reads = None
    return app
