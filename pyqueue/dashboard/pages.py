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
import markupsafe
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from pyqueue.dashboard import params
from pyqueue.dashboard.reads import Reads
from pyqueue.dashboard.security import CSRF_FIELD
from pyqueue.errors import JobNotFound, first_line
from pyqueue.visible import visible


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


def shown(value: Any) -> Any:
    """Every {{ }} of the templates: text with its bidi controls spelled out (visible.py)."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return visible(value)
    return value


def exact(value: Any) -> markupsafe.Markup:
    """A form value that must go back to the server as it came (escaped, not spelled out)."""
    return markupsafe.escape(value)


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pyqueue.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=shown,
    )
    env.filters.update(when=when, age=age, first_line=first_line, pretty=pretty, exact=exact)
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


async def overview(request: Request) -> Response:
    return render(
        request, "overview.html", queues=await run_in_threadpool(reads(request).queue_stats)
    )


async def job_list(request: Request) -> Response:
    db = reads(request)
    queue = params.text(request, "queue")
    status = params.text(request, "status")
    search = (params.text(request, "q") or "").strip()
    before = params.before_id(request)
    if search:
        if search.isascii() and search.isdigit() and int(search) <= params.MAX_JOB_ID:
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
        # Only the filters: never the token, which would end up in the page's links.
        api_query = {
            k: v for k, v in request.query_params.items() if k in ("queue", "status") and v
        }
        if before is not None:
            api_query["before_id"] = str(before)
    filters = {k: v for k, v in api_query.items() if k != "before_id"}
    following = params.next_before_id(jobs, has_more)
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
        statuses=await run_in_threadpool(db.statuses),
        api_url="/api/jobs?" + urlencode(api_query),
    )


async def job_page(request: Request) -> Response:
    job = await run_in_threadpool(reads(request).job, params.job_id(request))
    return render(request, "job.html", job=job)


async def schedules_page(request: Request) -> Response:
    schedules = await run_in_threadpool(reads(request).schedules)
    return render(request, "schedules.html", schedules=schedules)


async def dead_page(request: Request) -> Response:
    page = params.page_number(request)
    dead, has_more = await run_in_threadpool(reads(request).dead_letters, page)
    return render(request, "dead.html", dead=dead, page=page, has_more=has_more)
