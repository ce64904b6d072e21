"""The JSON API, for the page's script and for applications, and the actions.

Reads return what the pages show, as JSON. Cancel and Retry (of a job), Pause
and Resume (of a queue) are POST only and CSRF-checked; they answer JSON under
/api/ and redirect a form elsewhere. Whether a job may be cancelled or replayed
is the SQL functions' to decide.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from pyqueue.dashboard.pages import page_number, reads
from pyqueue.dashboard.reads import Reads
from pyqueue.dashboard.security import CSRF_FIELD, csrf_ok

Endpoint = Callable[[Request], Awaitable[Response]]


async def queues(request: Request) -> Response:
    return JSONResponse({"queues": await run_in_threadpool(reads(request).queue_stats)})


async def throughput(request: Request) -> Response:
    queue = request.query_params.get("queue") or None
    return JSONResponse({"minutes": await run_in_threadpool(reads(request).throughput, queue)})


async def jobs(request: Request) -> Response:
    db = reads(request)
    key = request.query_params.get("key")
    if key is not None:
        return JSONResponse(
            {"jobs": await run_in_threadpool(db.jobs_with_key, key), "has_more": False}
        )
    page = page_number(request)
    found, has_more = await run_in_threadpool(
        db.jobs,
        status=request.query_params.get("status") or None,
        queue=request.query_params.get("queue") or None,
        page=page,
    )
    return JSONResponse({"jobs": found, "page": page, "has_more": has_more})


async def job(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(reads(request).job, request.path_params["job_id"]))


async def schedules(request: Request) -> Response:
    return JSONResponse({"schedules": await run_in_threadpool(reads(request).schedules)})


async def dead(request: Request) -> Response:
    page = page_number(request)
    found, has_more = await run_in_threadpool(reads(request).dead_letters, page)
    return JSONResponse({"dead": found, "page": page, "has_more": has_more})


def action(run: Callable[[Reads, Any], dict[str, Any]], then: str, on: str = "job_id") -> Endpoint:
    """A POST endpoint running `run` on path parameter `on` (the job, or the
    queue); `then` formats the form's redirect."""

    async def endpoint(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        expected = request.app.state.csrf_token
        if not csrf_ok(request.headers, form.get(CSRF_FIELD, [None])[0], expected):
            raise HTTPException(403, "missing or wrong CSRF token, or a cross-site request")
        outcome = await run_in_threadpool(run, reads(request), request.path_params[on])
        if request.url.path.startswith("/api/"):
            return JSONResponse(outcome)
        return RedirectResponse(then.format(**outcome), status_code=303)

    return endpoint


def cancel_job(db: Reads, job_id: int) -> dict[str, Any]:
    return {"id": job_id, "cancelled": db.queue.cancel(job_id)}


def retry_job(db: Reads, job_id: int) -> dict[str, Any]:
    return {"id": job_id, "new_job": db.queue.retry_dead(job_id)}


def pause_queue(db: Reads, queue: str) -> dict[str, Any]:
    return {"queue": queue, "paused_since": db.queue.pause_queue(queue).isoformat()}


def resume_queue(db: Reads, queue: str) -> dict[str, Any]:
    return {"queue": queue, "resumed": db.queue.resume_queue(queue)}


cancel = action(cancel_job, "/jobs/{id}")
retry = action(retry_job, "/jobs/{new_job}")
pause = action(pause_queue, "/", on="queue")
resume = action(resume_queue, "/", on="queue")
