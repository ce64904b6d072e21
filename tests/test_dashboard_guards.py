"""The dashboard stays up and lets in only its owner, whatever a client sends.

Bodies are capped before they are read, every malformed parameter is a 400
(a hypothesis probe of every route), every response carries the security
headers, the Origin check compares the scheme, failed logins are slowed down,
and the CLI shows its login URL once and takes the token from a file.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers
from test_dashboard_api import TOKEN, Conn, bury, csrf_token, enqueue, http

from pyqueue.dashboard import credentials, serve_in_background
from pyqueue.dashboard.auth import LoginThrottle
from pyqueue.dashboard.guard import MAX_BODY_BYTES, Guard
from pyqueue.dashboard.reads import Reads
from pyqueue.dashboard.security import SECURITY_HEADERS, same_origin

REPO = Path(__file__).resolve().parent.parent
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def base(dsn: str) -> Iterator[str]:
    with serve_in_background(dsn, creds=credentials(TOKEN, None)) as url:
        yield url


def raw_request(base: str, head: str, body: bytes = b"", *, timeout: float = 10) -> str:
    """Send `head` and `body` on a socket as they are; the reply's status line and headers."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply.decode("latin-1")


def assert_security_headers(headers: Any, what: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, f"{what}: {name}"


# Request bodies ---------------------------------------------------------------------


def test_a_50_mb_post_is_refused_before_it_is_read(db: Conn, base: str) -> None:
    job_id = enqueue(db, "emails", {})
    fifty_mb = 50 * 1024 * 1024
    for path in (f"/jobs/{job_id}/cancel", f"/api/jobs/{job_id}/cancel"):
        started = time.monotonic()
        # Only the first kilobyte is sent: the answer must come without the rest.
        reply = raw_request(
            base,
            f"POST {path} HTTP/1.1\nHost: {urlsplit(base).netloc}\n"
            f"Authorization: Bearer {TOKEN}\nContent-Type: application/x-www-form-urlencoded\n"
            f"Content-Length: {fifty_mb}\n\n",
            b"csrf_token=" + b"x" * 1024,
        )
        assert reply.startswith("HTTP/1.1 413"), reply
        assert time.monotonic() - started < 5
        assert "x-frame-options: deny" in reply.lower()
    # The length is looked at first, before the login and before any endpoint.
    anonymous = raw_request(
        base,
        f"POST /jobs/{job_id}/cancel HTTP/1.1\nHost: x\nContent-Length: {fifty_mb}\n\n",
    )
    assert anonymous.startswith("HTTP/1.1 413"), anonymous
    assert http(f"{base}/api/jobs/{job_id}").json()["status"] == "pending"


def test_a_body_without_a_length_is_cut_off_at_the_limit(db: Conn, base: str) -> None:
    job_id = enqueue(db, "emails", {})
    chunk = b"a" * 16384
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    reply = raw_request(
        base,
        f"POST /api/jobs/{job_id}/cancel HTTP/1.1\nHost: {urlsplit(base).netloc}\n"
        f"Authorization: Bearer {TOKEN}\nTransfer-Encoding: chunked\n"
        "Content-Type: application/x-www-form-urlencoded\n\n",
        chunks,
    )
    assert reply.startswith("HTTP/1.1 413"), reply
    assert http(f"{base}/api/jobs/{job_id}").json()["status"] == "pending"


def through_guard(
    method: str, target: str, headers: dict[str, str], *, scheme: str = "http"
) -> tuple[list[dict[str, Any]], int]:
    """One request through the Guard alone, before an app that must not be reached.

    Returns the messages sent and how many times the body was asked for.
    """
    reads = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app was reached")

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path, _, query = target.partition("?")
    scope = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "scheme": scheme, "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000), "root_path": "", "http_version": "1.1",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    asyncio.run(Guard(app, credentials(TOKEN, None))(scope, receive, send))
    return sent, reads


def test_the_guard_never_reads_a_body_declared_too_large() -> None:
    sent, reads = through_guard(
        "POST",
        "/jobs/1/cancel",
        {**BEARER, "host": "127.0.0.1", "content-length": str(MAX_BODY_BYTES + 1)},
    )
    assert sent[0]["status"] == 413
    assert reads == 0


def test_the_session_cookie_is_secure_over_https() -> None:
    for scheme, secure in (("https", True), ("http", False)):
        sent, _ = through_guard("GET", f"/jobs?token={TOKEN}", {"host": "q.example"}, scheme=scheme)
        assert sent[0]["status"] == 303
        cookie = dict(sent[0]["headers"])[b"set-cookie"].decode()
        assert ("; secure" in cookie.lower()) is secure, cookie
        assert dict(sent[0]["headers"])[b"location"] == f"{scheme}://q.example/jobs".encode()


# Malformed parameters: 400, never 500 ------------------------------------------------


REVIEW_PROBES = [
    ("/jobs?page=%C2%B2", "page"),
    ("/api/jobs?page=" + "9" * 5000, "page"),
    ("/dead?page=" + str(10**20), "page"),
    ("/api/dead?page=" + str(10**20), "page"),
    ("/api/jobs?page=-1", "page"),
    ("/api/jobs?queue=a%00b", "queue"),
    ("/api/jobs?key=a%00b", "key"),
    ("/jobs?q=a%00b", "q"),
    ("/api/throughput?queue=%00", "queue"),
    ("/api/jobs?status=%00", "status"),
    ("/api/jobs?queue=" + "q" * 1001, "queue"),
    ("/api/jobs/" + "9" * 30, "job id"),
    ("/jobs/" + "9" * 30, "job id"),
]


def test_each_probe_of_the_review_is_a_400_naming_the_parameter(base: str) -> None:
    for path, named in REVIEW_PROBES:
        reply = http(base + path)
        assert reply.status == 400, (path, reply.body[:300])
        assert named in reply.body, path
        assert_security_headers(reply.headers, path)


ROUTES = ["/", "/jobs", "/jobs/{id}", "/dead", "/schedules", "/api/queues", "/api/throughput",
          "/api/jobs", "/api/jobs/{id}", "/api/dead", "/api/schedules"]  # fmt: skip
ACTIONS = ["/jobs/{id}/cancel", "/jobs/{id}/retry", "/api/jobs/{id}/cancel", "/api/jobs/{id}/retry"]
NAMES = ["page", "queue", "status", "key", "q", "token", "before_id", "limit"]
ODD_VALUES = ["²", "١٢", "9" * 5000, str(10**20), "10^20", "-1", "0", "1e3", " 1", "\x00",
              "a\x00b", "\u202e", "%", "&", "=", "completed", "' OR 1=", "\U0010ffff"]  # fmt: skip
# The routes that read query parameters: each gets every odd value in every name.
READING_ROUTES = ["/jobs", "/api/jobs", "/dead", "/api/dead", "/api/throughput"]
VALUES = st.one_of(
    st.sampled_from(ODD_VALUES).map(lambda v: quote(v, safe="")),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30).map(lambda v: quote(v, safe="")),
    st.binary(max_size=12).map(lambda v: quote_from_bytes(v, safe="")),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
)
JOB_IDS = st.one_of(
    st.integers(min_value=0, max_value=10**25),
    st.sampled_from([2**63 - 1, 2**63, 2**64, 10**20]),
).map(str)


def probe(conn: HTTPConnection, method: str, target: str, headers: dict[str, str]) -> None:
    """One request on a kept-alive connection; the answer must be below 500, with the headers."""
    conn.request(method, target, body=b"" if method == "POST" else None, headers=headers)
    response = conn.getresponse()
    body = response.read()
    if response.getheader("connection") == "close":
        conn.close()  # the next request opens it again
    assert response.status < 500, (method, target, response.status, body[:300])
    assert_security_headers(response.headers, target)


def connect(base: str) -> HTTPConnection:
    parts = urlsplit(base)
    return HTTPConnection(parts.hostname or "", parts.port, timeout=30)


def test_every_odd_value_in_every_parameter_is_below_500(
    probe_site: tuple[str, int, dict[str, str]],
) -> None:
    base, _, headers = probe_site
    conn = connect(base)
    for route in READING_ROUTES:
        for name in NAMES:
            for value in ODD_VALUES:
                probe(conn, "GET", f"{route}?{name}={quote(value, safe='')}", headers)
    conn.close()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES + ACTIONS),
    job_id=JOB_IDS,
    query=st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=4),
)
def test_no_route_and_no_parameter_gets_a_5xx(
    probe_site: tuple[str, int, dict[str, str]],
    route: str,
    job_id: str,
    query: list[tuple[str, str]],
) -> None:
    base, existing, headers = probe_site
    path = route.replace("{id}", job_id if job_id != "0" else str(existing))
    target = path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
    conn = connect(base)
    probe(conn, "POST" if route in ACTIONS else "GET", target, headers)
    conn.close()


@pytest.fixture
def probe_site(db: Conn, base: str) -> tuple[str, int, dict[str, str]]:
    """A dashboard with a dead job, and the headers of a logged-in same-site client."""
    dead = bury(db, "probes", {"n": 1})
    enqueue(db, "probes", {"n": 2})
    return base, dead, {**BEARER, "X-CSRF-Token": csrf_token(base), "Origin": base}


# Headers on every response, errors included ------------------------------------------


def test_errors_carry_the_security_headers(
    base: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Reads) -> list[dict[str, Any]]:
        raise RuntimeError("a bug in a read")

    monkeypatch.setattr(Reads, "queue_stats", broken)
    failed = http(base + "/api/queues")
    assert failed.status == 500
    assert "a bug" not in failed.body  # the details go to the log, not to the client
    assert "a bug in a read" in caplog.text
    assert_security_headers(failed.headers, "500")
    for reply, code in (
        (http(base + "/no/such/page"), 404),
        (http(base + "/api/jobs/999999"), 404),
        (http(base + "/", anonymous=True), 401),
        (http(base + "/api/jobs?page=x"), 400),
        (http(base + "/api/jobs/1/cancel"), 405),
    ):
        assert reply.status == code
        assert_security_headers(reply.headers, str(code))


# CSRF: the Origin must match in scheme too ---------------------------------------------


def test_the_origin_check_compares_the_scheme(db: Conn, base: str) -> None:
    host = urlsplit(base).netloc
    assert same_origin(Headers({"host": host, "origin": f"http://{host}"}), "http")
    assert not same_origin(Headers({"host": host, "origin": f"https://{host}"}), "http")
    assert not same_origin(Headers({"host": host, "referer": f"https://{host}/x"}), "http")
    assert not same_origin(Headers({"host": host, "origin": f"http://{host}"}), "https")
    assert not same_origin(Headers({"host": host, "origin": "http://[::1"}), "http")

    job_id = enqueue(db, "emails", {})
    headers = {"X-CSRF-Token": csrf_token(base)}
    url = f"{base}/api/jobs/{job_id}/cancel"
    other_scheme = http(url, method="POST", headers={**headers, "Origin": f"https://{host}"})
    assert other_scheme.status == 403
    assert http(f"{base}/api/jobs/{job_id}").json()["status"] == "pending"
    assert http(url, method="POST", headers={**headers, "Origin": base}).status == 200


# Failed logins -------------------------------------------------------------------------


def test_failed_logins_wait_longer_each_time_and_a_success_clears_them() -> None:
    now = [1000.0]
    throttle = LoginThrottle(free=3, longest_wait=8.0, clock=lambda: now[0], memory=3)
    for _ in range(3):
        assert throttle.wait("a") == 0
        throttle.failed("a")
    waits = []
    for _ in range(6):
        waits.append(throttle.wait("a"))
        now[0] += waits[-1]
        assert throttle.wait("a") == 0
        throttle.failed("a")
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert throttle.wait("b") == 0  # one address's failures do not slow another
    throttle.succeeded("a")
    assert throttle.wait("a") == 0
    for address in ("c", "d", "e", "f"):
        throttle.failed(address)
    assert len(throttle._failures) == 3  # bounded memory: the oldest address is forgotten


def test_after_five_failed_logins_even_the_right_token_waits(base: str) -> None:
    for n in range(5):
        # A forwarded address is not believed: it cannot make each guess a new client.
        guess = {"Authorization": "Bearer guess", "X-Forwarded-For": f"203.0.113.{n}"}
        assert http(base + "/api/queues", headers=guess).status == 401
    assert http(base + "/api/queues", anonymous=True).status == 401  # a visit is no guess
    slowed = http(base + "/api/queues")
    assert slowed.status == 429
    assert slowed.headers["retry-after"] == "1"
    assert_security_headers(slowed.headers, "429")
    time.sleep(1.1)
    assert http(base + "/api/queues").status == 200
    assert http(base + "/api/queues").status == 200  # the success cleared the count


# The CLI: a login URL once, a token from a file ----------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_cli(dsn: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pyqueue.cli", "dashboard", *args],
        stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "DATABASE_URL": dsn, **(env or {})},
    )  # fmt: skip


def wait_until_up(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the dashboard exited"
        parts = urlsplit(base)
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the dashboard did not start")


def test_the_cli_shows_a_random_token_once_as_a_login_url(dsn: str) -> None:
    port = free_port()
    process = start_cli(dsn, "--port", str(port))
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        found = re.search(r"log in at (http://127\.0\.0\.1:\d+)/\?token=([\w-]{40,})$", first)
        assert found, first
        base, token = found.groups()
        wait_until_up(base, process)
        assert http(base + "/api/queues", anonymous=True).status == 401
        assert http(f"{base}/?token={token}", anonymous=True).status == 303
        assert (
            http(base + "/api/queues", headers={"Authorization": f"Bearer {token}"}).status == 200
        )
    finally:
        process.terminate()
        process.wait(30)


def test_a_token_from_a_file_works_and_stays_out_of_ps(dsn: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a-token-kept-in-a-file-0600\n")
    token_file.chmod(0o600)
    port = free_port()
    process = start_cli(dsn, "--port", str(port), "--token-file", str(token_file))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, process)
        command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert b"a-token-kept" not in command_line
        bearer = {"Authorization": "Bearer a-token-kept-in-a-file-0600"}
        assert http(base + "/api/queues", headers=bearer).status == 200
        assert http(base + "/api/queues", anonymous=True).status == 401
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert "a-token-kept" not in errors  # a token the user chose is not printed
