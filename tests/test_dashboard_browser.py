"""The dashboard in a real browser: headless Chromium from Debian, driven by Playwright.

Each test serves the app in-process against its own database, moves jobs
through the SQL API, and watches the page follow without a reload. A
screenshot of every page lands in artifacts/screenshots/. Chromium missing is
a failure, not a skip: CI installs it (scripts/setup.sh).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from pyqueue.dashboard import Credentials, login_url, serve_in_background
from tests.helpers import claim_one, enqueue
from tests.test_dashboard_api import bury, complete_all

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
WAIT_MS = 15_000  # generous: the page polls every 2 s on a shared machine

Conn = psycopg.Connection[Any]

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: install Debian's chromium package (bash scripts/setup.sh)"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def creds() -> Credentials:
    return Credentials()  # a random token, as `pyqueue dashboard` makes by default


@pytest.fixture
def base(dsn: str, creds: Credentials) -> Iterator[str]:
    with serve_in_background(dsn, creds=creds) as url:
        yield url


@pytest.fixture
def dialogs() -> list[str]:
    return []


@pytest.fixture
def page(browser: Browser, base: str, creds: Credentials, dialogs: list[str]) -> Iterator[Page]:
    """A page logged in as a person does: through the login URL the dashboard printed."""
    context = browser.new_context(base_url=base, viewport={"width": 1200, "height": 800})
    page = context.new_page()

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    page.set_default_timeout(WAIT_MS)
    page.goto(login_url(base, creds))
    assert page.url == base + "/", "the token was not traded for a session cookie"
    yield page
    context.close()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def queue_row(page: Page, queue: str) -> list[str]:
    cells = page.locator("#queues tbody tr", has=page.get_by_role("link", name=queue, exact=True))
    return [c.strip() for c in cells.locator("td").all_inner_texts()]


def status_of(db: Conn, job_id: int) -> str:
    row = db.execute("SELECT status FROM pyqueue.all_jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return str(row[0])


def test_overview_follows_jobs_as_they_run(db: Conn, page: Page) -> None:
    page.goto("/")
    expect(page.locator("#queues tbody")).to_contain_text("Nothing")  # nothing yet

    for n in range(5):
        enqueue(db, "emails", {"to": f"user{n}@example.com"})
    complete_all(db, "emails", {"sent": True})
    enqueue(db, "emails", {"to": "late@example.com"})
    enqueue(db, "emails", {"to": "later@example.com"})
    bury(db, "reports", {"report": "monthly"})

    # queue, pending, due, retrying, running, completed, cancelled, dead, oldest due
    expect(page.locator("#queues tbody tr")).to_have_count(2)
    emails = queue_row(page, "emails")
    assert emails[:8] == ["emails", "2", "2", "0", "0", "5", "0", "0"]
    assert re.fullmatch(r"\d+s", emails[8])
    assert queue_row(page, "reports")[:8] == ["reports", "0", "0", "0", "0", "0", "0", "1"]
    expect(page.locator('[data-total="completed"]')).to_have_text("5")
    expect(page.locator('[data-total="dead"]')).to_have_text("1")
    expect(page.locator("#chart rect.bar-failed")).to_have_count(1)
    # Each bar's tooltip reads "HH:MM: N completed, M failed"; a run may straddle a minute.
    per_minute = {}
    for title in page.locator("#chart rect title").all_text_contents():
        minute, completed, failed = re.fullmatch(
            r"(\d\d:\d\d): (\d+) completed, (\d+) failed", title
        ).groups()
        per_minute[minute] = (int(completed), int(failed))
    assert sum(c for c, _ in per_minute.values()) == 5
    assert sum(f for _, f in per_minute.values()) == 1
    screenshot(page, "overview")


def test_retry_of_a_dead_job_creates_a_job_that_completes(db: Conn, page: Page) -> None:
    dead = bury(db, "imports", {"file": "customers.csv"}, error="ValueError: line 7: bad date")
    page.goto("/dead")
    row = page.locator("#dead tbody tr").first
    expect(row).to_contain_text("ValueError: line 7: bad date")
    screenshot(page, "dead-letters")

    row.get_by_role("button", name="Retry").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    new_job = int(page.url.rsplit("/", 1)[1])
    assert new_job != dead
    expect(page.locator("#state")).to_have_text("pending")
    assert status_of(db, new_job) == "pending"

    assert complete_all(db, "imports", {"imported": 1250}) == [new_job]
    expect(page.locator("#state")).to_have_text("completed")  # no reload: the page polls
    expect(page.locator("#result pre")).to_contain_text('"imported": 1250')
    screenshot(page, "job-done")

    page.goto("/dead")
    expect(page.locator("#dead tbody tr").first).to_contain_text(f"replayed as #{new_job}")


def test_cancel_cancels_a_pending_job(db: Conn, page: Page) -> None:
    job_id = enqueue(db, "emails", {"to": "someone@example.com"}, idempotency_key="welcome-42")
    page.goto("/jobs?q=welcome-42")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    screenshot(page, "jobs")
    page.get_by_role("link", name=f"#{job_id}").click()
    expect(page.locator("#state")).to_have_text("pending")

    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#state")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()
    assert status_of(db, job_id) == "cancelled"


def test_running_job_shows_live_progress(db: Conn, page: Page) -> None:
    job_id = enqueue(db, "reports", {"report": "yearly", "year": 2025})
    token = claim_one(db, "reports").lease_token
    db.execute("SELECT pyqueue.report_progress(%s, %s, 40, 'page 4 of 10')", [job_id, token])
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#state")).to_have_text("running")
    expect(page.locator("#progress progress")).to_have_attribute("value", "40")
    expect(page.locator("#progress")).to_contain_text("page 4 of 10")

    db.execute("SELECT pyqueue.report_progress(%s, %s, 80, 'page 8 of 10')", [job_id, token])
    expect(page.locator("#progress")).to_contain_text("page 8 of 10")
    assert page.locator("#progress progress").evaluate("p => p.value") == 80
    screenshot(page, "job-running")


def test_script_in_a_payload_is_shown_as_text(db: Conn, page: Page, dialogs: list[str]) -> None:
    evil = "<script>window.pwned = 1; alert('xss')</script><img src=x onerror=alert('img')>"
    job_id = bury(db, "evil", {"name": evil}, error=f"ValueError: {evil}")

    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#payload")).to_contain_text(evil)
    expect(page.locator("#error pre.error")).to_contain_text(evil)
    page.goto("/jobs")
    expect(page.locator("#jobs tbody")).to_contain_text(evil)  # drawn again by the poller
    # A locator assertion, not wait_for_function: that one failed a run with an
    # EvalError, its string evaluated inside the page, which the dashboard's
    # Content-Security-Policy (no unsafe-eval) refuses.
    expect(page.locator("#live")).to_contain_text(":")
    page.goto("/dead")
    expect(page.locator("#dead tbody")).to_contain_text(evil)
    expect(page.locator("#live")).to_contain_text(":")

    assert page.evaluate("window.pwned") is None
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("script:not([src])").count() == 0
    assert dialogs == []
    screenshot(page, "escaped-payload")


def test_bidi_controls_are_spelled_out_before_and_after_a_redraw(db: Conn, page: Page) -> None:
    # Read right to left from the override, the file name would pass for "invoice-exe.pdf".
    disguised = "invoice-\u202efdp.exe"
    job_id = bury(db, "mail", {"attachment": disguised}, error=f"ValueError: \u2067{disguised}")
    for path, redrawn in ((f"/jobs/{job_id}", "#error pre.error"), ("/jobs", "#jobs tbody")):
        page.goto(path)
        expect(page.locator("#live")).to_contain_text(":")  # the poller has drawn it again
        shown = page.locator(redrawn).inner_text()
        assert "invoice-<U+202E>fdp.exe" in shown, path
        text = page.locator("main").inner_text()
        assert "\u202e" not in text and "\u2067" not in text, path
        assert "ValueError: <U+2067>invoice" in text, path
    assert "invoice-<U+202E>fdp.exe" in page.locator("#jobs tbody").inner_text()
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#payload")).to_contain_text('"invoice-<U+202E>fdp.exe"')
    screenshot(page, "bidi-controls")
