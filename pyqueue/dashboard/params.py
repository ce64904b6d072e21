"""The query and path parameters the endpoints read, checked: bad input is a 400, not a 500.

PostgreSQL cannot hold a NUL in text and a bigint stops at 2**63 - 1, so
those are refused here with a message naming the parameter, before any query.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from pyqueue.errors import InvalidArgument

# Far past any real page; keeps OFFSET arithmetic inside a bigint.
MAX_PAGE = 1_000_000_000
MAX_TEXT = 1000
MAX_JOB_ID = 2**63 - 1


def _shown(raw: str) -> str:
    return repr(raw[:20] + ("..." if len(raw) > 20 else ""))


def _storable(name: str, raw: str) -> str:
    """raw, refused unless PostgreSQL can hold it as text of at most MAX_TEXT characters."""
    if "\x00" in raw:
        raise InvalidArgument(f"{name} must not contain a NUL character")
    if len(raw) > MAX_TEXT:
        raise InvalidArgument(f"{name} is longer than {MAX_TEXT} characters")
    return raw


def page_number(request: Request) -> int:
    """?page=, a whole number from 1 to MAX_PAGE in ASCII digits (1 when absent)."""
    raw = request.query_params.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_PAGE)):
        raise InvalidArgument(
            f"page must be a whole number from 1 to {MAX_PAGE}, not {_shown(raw)}"
        )
    page = int(raw)
    if not 1 <= page <= MAX_PAGE:
        raise InvalidArgument(f"page must be a whole number from 1 to {MAX_PAGE}, not {page}")
    return page


def text(request: Request, name: str) -> str | None:
    """?name=, as text PostgreSQL can hold (None when absent or empty)."""
    raw = request.query_params.get(name)
    return _storable(name, raw) if raw else None


def path_text(request: Request, name: str) -> str:
    """The {name} of the path (a queue's name), as text PostgreSQL can hold."""
    return _storable(name, request.path_params[name])


def job_id(request: Request) -> int:
    """The {job_id} of the path, within a bigint."""
    value: int = request.path_params["job_id"]
    if value > MAX_JOB_ID:
        raise InvalidArgument(f"job id must be at most {MAX_JOB_ID}, not {str(value)[:20]}...")
    return value


def before_id(request: Request) -> int | None:
    """?before_id=, where a page of the jobs list starts: below this job id (None: newest).

    The jobs list is paged by keyset, never by number: a page number deep in a
    long list made the database read every row before it. page=1 (the newest)
    is still taken; any other page number is refused, naming before_id.
    """
    if page_number(request) != 1:
        raise InvalidArgument(
            "jobs are paged by before_id (the last job id shown), not by page number"
        )
    raw = request.query_params.get("before_id", "")
    if raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and 0 < int(raw) <= MAX_JOB_ID):
        raise InvalidArgument(f"before_id must be a job id, not {_shown(raw)}")
    return int(raw)


def next_before_id(jobs: list[dict[str, Any]], has_more: bool) -> int | None:
    """The before_id of the page after this one, if there is one."""
    return int(jobs[-1]["id"]) if has_more and jobs else None
