"""The dashboard's JSON API, pages and guards, over plain HTTP.

The app runs in-process (uvicorn on a background thread, a free loopback port)
against the test's own database; jobs are moved through the SQL API as a
worker would move them. The dashboard always wants a token: `http` sends the
fixtures' TOKEN as a bearer token unless told to go in anonymous.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pyqueue.dashboard import Credentials, credentials, login_url, serve_in_background
from pyqueue.errors import InvalidArgument
from tests.helpers import claim, claim_one, complete, enqueue

Conn = psycopg.Connection[Any]


# Moving jobs through the SQL API ---------------------------------------------


def complete_all(db: Conn, queue: str, result: Any = None) -> list[int]:
    """Claim and complete every due job of `queue`; their ids."""
    done = []
    for job in claim(db, queue, 1000):
        assert complete(db, job.id, job.lease_token, json.dumps(result))
        done.append(job.id)
    return done


def bury(db: Conn, queue: str, payload: Any, error: str = "ValueError: bad row 7") -> int:
    """A job of `queue` that failed its only attempt: a dead letter; its id."""
    job_id = enqueue(db, queue, payload, max_attempts=1)
    claimed = claim_one(db, queue)
    assert claimed.id == job_id
    token = claimed.lease_token
    traceback = f'Traceback (most recent call last):\n  File "app.py", line 3\n{error}'
    db.execute("SELECT pyqueue.fail(%s, %s, %s, %s)", [job_id, token, error, traceback])
    return job_id


# A small HTTP client that does not follow redirects -----------------------


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirect)
TOKEN = "the-token-of-the-test-dashboards"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    url: str,
    *,
    method: str = "GET",
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    anonymous: bool = False,
) -> Reply:
    """One request; logged in with TOKEN unless `anonymous` or the headers say how."""
    headers = dict(headers or {})
    if not anonymous and not {"Authorization", "Cookie"} & set(headers):
        headers["Authorization"] = f"Bearer {TOKEN}"
    body = None
    if data is not None:
        body = "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in data.items()).encode()
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    if body is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with OPENER.open(request, timeout=30) as response:
            return Reply(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read().decode())


def csrf_token(base: str) -> str:
    page = http(base + "/").body
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


@pytest.fixture
def base(dsn: str) -> Iterator[str]:
    """The base URL of a dashboard serving this test's database, behind TOKEN."""
    with serve_in_background(dsn, creds=credentials(TOKEN, None)) as url:
        yield url


# The JSON API -----------------------------------------------------------------


def test_queue_stats_and_throughput_count_what_ran(db: Conn, base: str) -> None:
    for n in range(3):
        enqueue(db, "emails", {"to": f"user{n}@example.com"})
    enqueue(db, "emails", {"to": "later@example.com"}, delay="1 hour")
    complete_all(db, "emails")
    enqueue(db, "emails", {"to": "waiting@example.com"})
    bury(db, "reports", {"report": 1})

    queues = {q["queue"]: q for q in http(base + "/api/queues").json()["queues"]}
    assert queues["emails"]["completed"] == 3
    assert queues["emails"]["pending"] == 2
    assert queues["emails"]["due"] == 1
    assert queues["emails"]["oldest_due_age"] >= 0
    assert queues["reports"]["dead"] == 1
    assert queues["reports"]["pending"] == 0

    minutes = http(base + "/api/throughput").json()["minutes"]
    assert len(minutes) == 60
    assert sum(m["completed"] for m in minutes) == 3
    assert sum(m["failed"] for m in minutes) == 1
    only_reports = http(base + "/api/throughput?queue=reports").json()["minutes"]
    assert sum(m["completed"] for m in only_reports) == 0
    assert sum(m["failed"] for m in only_reports) == 1


def test_a_job_shows_the_status_and_actions_that_sql_gives(db: Conn, base: str) -> None:
    queued = enqueue(db, "exports", {"n": 1})
    job = http(f"{base}/api/jobs/{queued}").json()
    assert (job["status"], job["actions"]) == ("pending", ["cancel"])

    claimed = claim_one(db, "exports")
    running, token = claimed.id, claimed.lease_token
    db.execute("SELECT pyqueue.report_progress(%s, %s, 40, 'page 4 of 10')", [running, token])
    job = http(f"{base}/api/jobs/{running}").json()
    assert (job["status"], job["progress"], job["progress_message"]) == (
        "running",
        40,
        "page 4 of 10",
    )

    db.execute("SELECT pyqueue.complete(%s, %s, '{\"rows\": 12}')", [running, token])
    job = http(f"{base}/api/jobs/{running}").json()
    assert (job["status"], job["result"], job["finished"]) == ("completed", {"rows": 12}, True)
    assert job["actions"] == []

    dead = bury(db, "exports", {"n": 2}, error="KeyError: 'email'")
    job = http(f"{base}/api/jobs/{dead}").json()
    assert (job["status"], job["actions"]) == ("dead", ["retry"])
    assert job["error"] == "KeyError: 'email'"
    assert "Traceback" in job["traceback"]

    cancelled = enqueue(db, "exports", {"n": 3})
    db.execute("SELECT pyqueue.cancel(%s)", [cancelled])
    assert http(f"{base}/api/jobs/{cancelled}").json()["status"] == "cancelled"


def test_unknown_job_is_404_with_the_reason(base: str) -> None:
    reply = http(base + "/api/jobs/999999")
    assert reply.status == 404
    assert "999999" in reply.json()["error"]
    assert http(base + "/jobs/999999").status == 404


def test_jobs_are_listed_newest_first_by_keyset_and_filter(db: Conn, base: str) -> None:
    ids = [enqueue(db, "bulk", {"i": i}) for i in range(120)]
    other = enqueue(db, "other", {})

    first = http(base + "/api/jobs?queue=bulk").json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:50]
    assert first["has_more"] is True
    assert first["next_before_id"] == ids[::-1][49]
    # Listings carry no payload, result or traceback.
    assert not {"payload", "result", "traceback"} & set(first["jobs"][0])
    second = http(base + f"/api/jobs?queue=bulk&before_id={first['next_before_id']}").json()
    assert [j["id"] for j in second["jobs"]] == ids[::-1][50:100]
    third = http(base + f"/api/jobs?queue=bulk&before_id={second['next_before_id']}").json()
    assert [j["id"] for j in third["jobs"]] == ids[::-1][100:]
    assert third["has_more"] is False and third["next_before_id"] is None
    page = http(base + f"/jobs?queue=bulk&before_id={first['next_before_id']}").body
    assert f'href="/jobs/{ids[69]}"' in page and f'href="/jobs/{ids[70]}"' not in page
    assert f'href="/jobs?queue=bulk&amp;before_id={second["next_before_id"]}"' in page
    # page numbers are gone but for the first; the refusal names before_id.
    assert http(base + "/api/jobs?queue=bulk&page=1").json()["jobs"] == first["jobs"]
    for path in ("/api/jobs?page=3", "/jobs?page=1000000000", "/api/jobs?before_id=%C2%B2"):
        refused = http(base + path)
        assert refused.status == 400 and "before_id" in refused.body, path

    everything = http(base + "/api/jobs").json()["jobs"]
    assert everything[0]["id"] == other
    complete_all(db, "other")
    done = http(base + "/api/jobs?status=completed").json()["jobs"]
    assert [j["id"] for j in done] == [other]

    bad = http(base + "/api/jobs?status=finished")
    assert bad.status == 400
    assert "unknown status" in bad.json()["error"]
    assert http(base + "/api/jobs?page=0").status == 400


def test_find_a_job_by_id_or_idempotency_key(db: Conn, base: str) -> None:
    keyed = enqueue(db, "invoices", {"order": 77}, idempotency_key="order-77")
    enqueue(db, "invoices", {"order": 78}, idempotency_key="order-78")

    found = http(base + "/api/jobs?key=order-77").json()["jobs"]
    assert [j["id"] for j in found] == [keyed]
    assert http(base + "/api/jobs?key=nobody").json()["jobs"] == []

    page = http(base + "/jobs?q=order-77")
    assert page.status == 200
    assert f'href="/jobs/{keyed}"' in page.body
    assert "order-78" not in page.body

    by_id = http(f"{base}/jobs?q={keyed}")
    assert by_id.status == 303
    assert by_id.headers["location"].endswith(f"/jobs/{keyed}")


def test_payload_and_error_are_escaped_in_pages(db: Conn, base: str) -> None:
    evil = "<script>window.pwned = 1</script>"
    job_id = bury(db, "evil", {"name": evil}, error=f"ValueError: {evil}")
    for path in (f"/jobs/{job_id}", "/jobs", "/dead"):
        body = http(base + path).body
        assert "<script>window.pwned" not in body, path
        assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in body, path
    csp = http(base + "/").headers["content-security-policy"]
    assert "script-src 'self'" in csp


# Actions and their guards ---------------------------------------------------------


def test_cancel_needs_the_csrf_token_and_a_same_origin_request(db: Conn, base: str) -> None:
    job_id = enqueue(db, "emails", {})
    url = f"{base}/jobs/{job_id}/cancel"
    token = csrf_token(base)

    assert http(url, method="POST", data={}).status == 403
    assert http(url, method="POST", data={"csrf_token": "forged"}).status == 403
    cross_site = http(
        url, method="POST", data={"csrf_token": token}, headers={"Origin": "http://evil.test"}
    )
    assert cross_site.status == 403
    cross_referer = http(
        url, method="POST", data={"csrf_token": token}, headers={"Referer": "http://evil.test/"}
    )
    assert cross_referer.status == 403
    assert http(f"{base}/api/jobs/{job_id}").json()["status"] == "pending"

    same_site = http(url, method="POST", data={"csrf_token": token}, headers={"Origin": base})
    assert same_site.status == 303
    assert same_site.headers["location"].endswith(f"/jobs/{job_id}")
    assert http(f"{base}/api/jobs/{job_id}").json()["status"] == "cancelled"
    assert http(url, method="GET").status == 405


def test_retry_and_cancel_through_the_api(db: Conn, base: str) -> None:
    dead = bury(db, "reports", {"report": 9})
    headers = {"X-CSRF-Token": csrf_token(base)}
    replay = http(f"{base}/api/jobs/{dead}/retry", method="POST", headers=headers)
    assert replay.status == 200
    new_job = replay.json()["new_job"]
    assert http(f"{base}/api/jobs/{new_job}").json()["status"] == "pending"
    replayed = http(f"{base}/api/jobs/{dead}").json()
    assert (replayed["retried_as"], replayed["actions"]) == (new_job, [])

    not_dead = http(f"{base}/api/jobs/{new_job}/retry", method="POST", headers=headers)
    assert not_dead.status == 409
    assert "not dead-lettered" in not_dead.json()["error"]

    cancel = http(f"{base}/api/jobs/{new_job}/cancel", method="POST", headers=headers)
    assert cancel.json() == {"id": new_job, "cancelled": True}
    again = http(f"{base}/api/jobs/{new_job}/cancel", method="POST", headers=headers)
    assert again.json() == {"id": new_job, "cancelled": False}


def test_a_random_token_is_required_by_default(dsn: str) -> None:
    made = Credentials()
    assert made.generated and made.token is not None and len(made.token) >= 40
    assert Credentials().token != made.token
    assert made.token not in repr(made)
    with serve_in_background(dsn) as base:  # nobody was told its token
        assert http(base + "/api/queues", anonymous=True).status == 401
        assert http(base + "/api/queues").status == 401
    with serve_in_background(dsn, host="0.0.0.0", creds=made) as base:
        assert http(base + "/", anonymous=True).status == 401
        login = http(login_url(base, made), anonymous=True)
        assert login.status == 303
        assert login.headers["location"] == base + "/"


def test_bad_start_options_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="USER:PASSWORD"):
        credentials(None, "no-colon-here")
    with pytest.raises(InvalidArgument, match="at least 16"):
        credentials("short", None)
    with pytest.raises(InvalidArgument, match="not both"):
        credentials(TOKEN, None, tmp_path / "token")
    with pytest.raises(InvalidArgument, match="cannot read the token file"):
        credentials(None, None, tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InvalidArgument, match="is empty"):
        credentials(None, None, tmp_path / "empty")
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert credentials(None, None, tmp_path / "token").token == TOKEN


def test_a_token_is_enforced_when_given(dsn: str) -> None:
    token = "s3cret-token-for-the-test"
    with serve_in_background(dsn, creds=credentials(token, None)) as base:
        assert http(base + "/api/queues", anonymous=True).status == 401
        assert http(base + "/api/queues", headers={"Authorization": "Bearer nope"}).status == 401
        bearer = http(base + "/api/queues", headers={"Authorization": f"Bearer {token}"})
        assert bearer.status == 200

        handed = http(f"{base}/jobs?token={token}&status=dead", anonymous=True)
        assert handed.status == 303
        assert handed.headers["location"] == f"{base}/jobs?status=dead"
        cookie = handed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        cookie_pair = cookie.split(";")[0]
        name, _, value = cookie_pair.partition("=")
        # The cookie is derived from the token, and reveals nothing of it.
        assert name == "pyqueue_dashboard_session"
        assert re.fullmatch(r"[0-9a-f]{64}", value)
        assert token not in cookie
        assert http(base + "/jobs?status=dead", headers={"Cookie": cookie_pair}).status == 200
        for forged in (f"pyqueue_dashboard_session={token}", "pyqueue_dashboard_token=" + token):
            assert http(base + "/", headers={"Cookie": forged}).status == 401
    # A new process has a new key: the old session cookie no longer opens it.
    with serve_in_background(dsn, creds=credentials(token, None)) as base:
        assert http(base + "/", headers={"Cookie": cookie_pair}).status == 401


def test_basic_auth_is_enforced_when_given(dsn: str) -> None:
    def basic(user_password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(user_password.encode()).decode()}

    with serve_in_background(dsn, creds=credentials(None, "ops:correct horse")) as base:
        refused = http(base + "/", anonymous=True)
        assert refused.status == 401
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert http(base + "/", headers=basic("ops:wrong")).status == 401
        assert http(base + "/", headers=basic("root:correct horse")).status == 401
        assert http(base + "/", headers=basic("ops:correct horse")).status == 200


def test_schedules_are_listed_with_their_next_and_last_runs(db: Conn, base: str) -> None:
    assert "No schedules." in http(base + "/schedules").body
    db.execute("SELECT pyqueue.schedule('nightly', '0 3 * * *', 'reports')")
    db.execute("SELECT pyqueue.schedule('hourly', '@hourly', 'reports', tz => 'Asia/Tokyo')")
    db.execute(
        "UPDATE pyqueue.cron_schedules SET next_run_at = now() - interval '1 minute'"
        " WHERE name = 'hourly'"
    )
    fired = db.execute("SELECT pyqueue.maintain()").fetchone()
    assert fired is not None and fired[0]["fired"] == 1
    listed = http(base + "/api/schedules").json()["schedules"]
    assert [s["name"] for s in listed] == ["hourly", "nightly"]
    hourly = listed[0]
    assert (hourly["cron"], hourly["tz"], hourly["queue"]) == ("@hourly", "Asia/Tokyo", "reports")
    assert hourly["last_job_id"] is not None and hourly["last_run_at"] is not None
    page = http(base + "/schedules").body
    assert "<td>nightly</td>" in page and "<code>0 3 * * *</code>" in page
    assert f'href="/jobs/{hourly["last_job_id"]}"' in page


# Running as pyqueue_operator --------------------------------------------------


def test_every_read_and_action_works_as_an_operator_login(db: Conn, dsn: str) -> None:
    # The dashboard needs no more than pyqueue_operator: every page and API
    # read, cancel and retry, over a login granted that role and nothing else.
    from tests.helpers import login_role

    dead = bury(db, "ops", {"n": 2})
    pending = enqueue(db, "ops", {"n": 1}, idempotency_key="ops-1")
    db.execute("SELECT pyqueue.schedule('nightly', '0 3 * * *', 'ops')")
    with (
        login_role(db, dsn, "pyqueue_operator") as operator,
        serve_in_background(operator, creds=credentials(TOKEN, None)) as url,
    ):
        for path in [
            "/",
            "/jobs",
            "/jobs?queue=ops&status=pending",
            f"/jobs?before_id={pending}",
            "/jobs?q=ops-1",
            f"/jobs/{pending}",
            "/dead",
            "/schedules",
            "/api/queues",
            "/api/throughput?queue=ops",
            "/api/jobs",
            "/api/jobs?key=ops-1",
            f"/api/jobs/{dead}",
            "/api/dead",
            "/api/schedules",
        ]:
            assert http(url + path).status == 200, path
        headers = {"X-CSRF-Token": csrf_token(url)}
        cancel = http(f"{url}/api/jobs/{pending}/cancel", method="POST", headers=headers)
        assert cancel.json() == {"id": pending, "cancelled": True}
        retry = http(f"{url}/api/jobs/{dead}/retry", method="POST", headers=headers)
        assert retry.status == 200 and retry.json()["new_job"] > dead
        # Queue grants hold in the dashboard too: a 403 that names the queue.
        operator_name = psycopg.conninfo.conninfo_to_dict(operator)["user"]
        db.execute("SELECT pyqueue.grant_queues(%s, 'mine.*', '{read,work}')", [operator_name])
        hidden = http(f"{url}/api/jobs/{pending}")
        assert hidden.status == 403 and "may not read on queue 'ops'" in hidden.json()["error"]
        assert http(url + "/api/jobs").json()["jobs"] == []
