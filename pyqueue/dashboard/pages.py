"""The pages people read, rendered server-side by Jinja2 (autoescaped).

Each endpoint reads what it shows through the app's Reads (app.state.reads)
and renders one template; a small script then keeps the page fresh from the
JSON API (api.py).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from pyqueue.dashboard.reads import STATE_WORDS, STATUSES, Reads
from pyqueue.dashboard.security import CSRF_FIELD
from pyqueue.errors import InvalidArgument, JobNotFound, first_line


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


def reads(request: Request) -> Reads:
    found: Reads | None = getattr(request.app.state, "reads", None)
    assert found is not None, "the dashboard's lifespan has not started"
    return found


def render(request: Request, name: str, **context: Any) -> Response:
    state = request.app.state
    context.update(csrf_token=state.csrf_token, csrf_field=CSRF_FIELD, nav=name)
    response: Response = state.views.TemplateResponse(request, name, context)
    return response


def page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidArgument(f"page must be a whole number from 1, not {raw[:20]!r}")
    return int(raw)


def before_id(request: Request) -> int | None:
    """Where a page of the jobs list starts: below this job id (None: the newest).

    The jobs list is paged by keyset, never by number: a page number deep in a
    long list made the database read every row before it. page=1 (the newest)
    is still taken; any other page number is refused, naming before_id.
    """
    page = request.query_params.get("page")
    if page is not None and page != "1":
        raise InvalidArgument(
            "jobs are paged by before_id (the last job id shown), not by page number"
        )
    raw = request.query_params.get("before_id", "")
    if raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and 0 < int(raw) < 2**63):
        raise InvalidArgument(f"before_id must be a job id, not {raw[:20]!r}")
    return int(raw)


def next_before_id(jobs: list[dict[str, Any]], has_more: bool) -> int | None:
    """The before_id of the page after this one, if there is one."""
    return int(jobs[-1]["id"]) if has_more and jobs else None


async def overview(request: Request) -> Response:
    return render(
        request, "overview.html", queues=await run_in_threadpool(reads(request).queue_stats)
    )


async def job_list(request: Request) -> Response:
    db = reads(request)
    queue = request.query_params.get("queue") or None
    status = request.query_params.get("status") or None
    search = request.query_params.get("q", "").strip()
    before = before_id(request)
    if search:
        if search.isdigit():
            try:
                found = await run_in_threadpool(db.job, int(search))
                return RedirectResponse(f"/jobs/{found['id']}", status_code=303)
            except JobNotFound:
                pass
        jobs, has_more = await run_in_threadpool(db.jobs_with_key, search), False
        api_query = {"key": search}
    else:
        jobs, has_more = await run_in_threadpool(
            db.jobs, status=status, queue=queue, before_id=before
        )
        api_query = {
            k: v for k, v in request.query_params.items() if k in ("queue", "status") and v
        }
        if before is not None:
            api_query["before_id"] = str(before)
    filters = {k: v for k, v in api_query.items() if k != "before_id"}
    following = next_before_id(jobs, has_more)
    return render(
        request,
        "jobs.html",
        jobs=jobs,
        before_id=before,
        newest_url="/jobs?" + urlencode(filters),
        older_url=None
        if following is None
        else "/jobs?" + urlencode({**filters, "before_id": following}),
        queue=queue or "",
        status=status or "",
        search=search,
        queues=[row["queue"] for row in await run_in_threadpool(db.queue_stats)],
        api_url="/api/jobs?" + urlencode(api_query),
    )


async def job_page(request: Request) -> Response:
    job = await run_in_threadpool(reads(request).job, request.path_params["job_id"])
    return render(request, "job.html", job=job)


async def schedules_page(request: Request) -> Response:
    schedules = await run_in_threadpool(reads(request).schedules)
    return render(request, "schedules.html", schedules=schedules)


async def dead_page(request: Request) -> Response:
    page = page_number(request)
    dead, has_more = await run_in_threadpool(reads(request).dead_letters, page)
    return render(request, "dead.html", dead=dead, page=page, has_more=has_more)
