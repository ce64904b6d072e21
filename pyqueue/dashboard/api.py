"""The JSON API, for the page's script and for applications, and the actions.

Reads return what the pages show, as JSON. Cancel and Retry (of a job), Pause
and Resume (of a queue) are POST only and CSRF-checked (the Origin and an
X-CSRF-Token header before the body is read, else the form's field); they
answer JSON under /api/ and redirect a form elsewhere. Whether a job may be
cancelled or replayed is the SQL functions' to decide.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from pyqueue.dashboard import params
from pyqueue.dashboard.pages import reads
from pyqueue.dashboard.reads import Reads
from pyqueue.dashboard.security import CSRF_FIELD, CSRF_HEADER, csrf_ok, same_origin
from pyqueue.metrics import exposition

Endpoint = Callable[[Request], Awaitable[Response]]


async def queues(request: Request) -> Response:
    return JSONResponse({"queues": await run_in_threadpool(reads(request).queue_stats)})


async def metrics(request: Request) -> Response:
    """The queues' figures for Prometheus (pyqueue.metrics), behind the same guard."""
    rows = await run_in_threadpool(reads(request).queue_metrics)
    return Response(exposition(rows), media_type=CONTENT_TYPE_LATEST)


async def throughput(request: Request) -> Response:
    queue = params.text(request, "queue")
    return JSONResponse({"minutes": await run_in_threadpool(reads(request).throughput, queue)})


async def jobs(request: Request) -> Response:
    db = reads(request)
    key = params.text(request, "key")
    if key is not None:
        return JSONResponse(
            {"jobs": await run_in_threadpool(db.jobs_with_key, key), "has_more": False}
        )
    before = params.before_id(request)
    found, has_more = await run_in_threadpool(
        db.jobs,
        status=params.text(request, "status"),
        queue=params.text(request, "queue"),
        before_id=before,
    )
    return JSONResponse(
        {
            "jobs": found,
            "before_id": before,
            "has_more": has_more,
            "next_before_id": params.next_before_id(found, has_more),
        }
    )


async def job(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(reads(request).job, params.job_id(request)))


async def schedules(request: Request) -> Response:
    return JSONResponse({"schedules": await run_in_threadpool(reads(request).schedules)})


async def dead(request: Request) -> Response:
    page = params.page_number(request)
    found, has_more = await run_in_threadpool(reads(request).dead_letters, page)
    return JSONResponse({"dead": found, "page": page, "has_more": has_more})


def action(run: Callable[[Reads, Any], dict[str, Any]], then: str, on: str = "job_id") -> Endpoint:
    """A POST endpoint running `run` on path parameter `on` (the job, or the
    queue); `then` formats the form's redirect."""

    async def endpoint(request: Request) -> Response:
        scheme = request.url.scheme
        if not same_origin(request.headers, scheme):
            raise HTTPException(403, "a cross-site request")
        form_token = None
        if CSRF_HEADER not in request.headers:
            # The guard has capped the body's size; only now is it read.
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            form_token = form.get(CSRF_FIELD, [None])[0]
        if not csrf_ok(request.headers, scheme, form_token, request.app.state.csrf_token):
            raise HTTPException(403, "missing or wrong CSRF token, or a cross-site request")
        subject = params.job_id(request) if on == "job_id" else params.path_text(request, on)
        outcome = await run_in_threadpool(run, reads(request), subject)
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
