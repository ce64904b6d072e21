"""Who may use the dashboard: a token, random unless one is given, or basic auth.

- Without options the dashboard makes a random token and prints it once, as a
  login URL, as Jupyter does; loopback is no exception, since every user of
  the machine can reach it.
- A token given on start comes from --token, $PYQUEUE_DASHBOARD_TOKEN or the
  file named by --token-file / $PYQUEUE_DASHBOARD_TOKEN_FILE (the latter two
  keep it out of `ps`).
- A browser hands the token once as ?token=...; it gets back an HttpOnly,
  SameSite=Strict session cookie holding an HMAC of the token under a key made
  at start, so the cookie neither reveals the token nor outlives the process.
  API clients send `Authorization: Bearer <token>`.
- After a few failed logins from one address, its next attempts must wait,
  longer each time (429 with Retry-After), so the token cannot be guessed fast.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from pyqueue.errors import InvalidArgument

SESSION_COOKIE = "pyqueue_dashboard_session"
TOKEN_ENV = "PYQUEUE_DASHBOARD_TOKEN"
TOKEN_FILE_ENV = "PYQUEUE_DASHBOARD_TOKEN_FILE"
MIN_TOKEN_LENGTH = 16


def _new_key() -> bytes:
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class Credentials:
    """What a request must present. With neither a token nor basic auth, a random token."""

    token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = field(default=None, repr=False)
    generated: bool = field(default=False, init=False)
    session_key: bytes = field(default_factory=_new_key, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.token is None and self.basic_user is None:
            object.__setattr__(self, "token", secrets.token_urlsafe(32))
            object.__setattr__(self, "generated", True)

    def session(self) -> str:
        """The session cookie's value: derived from the token, never the token."""
        assert self.token is not None
        message = b"pyqueue dashboard session:" + self.token.encode()
        return hmac.new(self.session_key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        shown = "generated" if self.generated else ("given" if self.token else "none")
        return f"Credentials(token={shown}, basic_user={self.basic_user!r})"


def read_token_file(path: Path) -> str:
    """The token in `path`: its first line, stripped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise InvalidArgument(f"cannot read the token file {path}: {error.strerror}") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise InvalidArgument(f"the token file {path} is empty")
    return token


def credentials(
    token: str | None, basic_auth: str | None, token_file: Path | None = None
) -> Credentials:
    """Check the start options; basic_auth is USER:PASSWORD. Nothing given: a random token."""
    if token is not None and token_file is not None:
        raise InvalidArgument("give the token once: --token or --token-file, not both")
    if token_file is not None:
        token = read_token_file(token_file)
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise InvalidArgument(f"the token must be at least {MIN_TOKEN_LENGTH} characters long")
    if basic_auth is None:
        return Credentials(token=token)
    user, colon, password = basic_auth.partition(":")
    if not colon or not user or len(password) < 8:
        raise InvalidArgument(
            "--basic-auth must be USER:PASSWORD with a password of at least 8 characters"
        )
    return Credentials(token=token, basic_user=user, basic_password=password)


def login_url(base: str, creds: Credentials) -> str:
    """The address that logs a browser in (the token goes once, then a cookie)."""
    return f"{base.rstrip('/')}/?token={creds.token}" if creds.token else base


def same(given: str, expected: str | None) -> bool:
    """Constant-time equality; False when nothing is expected."""
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


class LoginThrottle:
    """Failed logins per client address: after `free` of them, waits that double.

    Only attempts that present a token or a password count; a plain visit or a
    stale session cookie does not. Addresses not seen for `forget_after`
    seconds are forgotten, and at most `memory` are kept.
    """

    def __init__(
        self,
        *,
        free: int = 5,
        longest_wait: float = 60.0,
        forget_after: float = 900.0,
        memory: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.longest_wait = longest_wait
        self.forget_after = forget_after
        self.memory = memory
        self.clock = clock
        self._failures: dict[str, tuple[int, float]] = {}

    def wait(self, address: str) -> float:
        """Seconds before `address` may try again (0: now)."""
        count, last = self._failures.get(address, (0, 0.0))
        if count < self.free:
            return 0.0
        since = self.clock() - last
        if since > self.forget_after:
            del self._failures[address]
            return 0.0
        return max(0.0, min(self.longest_wait, 2.0 ** (count - self.free)) - since)

    def failed(self, address: str) -> None:
        count, _ = self._failures.pop(address, (0, 0.0))
        self._failures[address] = (count + 1, self.clock())
        while len(self._failures) > self.memory:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


def _basic_ok(request: Request, creds: Credentials) -> bool:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared, always, so the timing tells nothing about which was wrong.
    return same(user, creds.basic_user) & same(password, creds.basic_password)


def _presented(request: Request) -> bool:
    """Whether the request tries to log in (a token or a password), not merely visits."""
    return "token" in request.query_params or "authorization" in request.headers


def _refusal(creds: Credentials, status: int = 401, wait: float = 0.0) -> Response:
    """401 with the way in (a basic-auth prompt or how to pass the token), or 429."""
    if status == 429:
        return PlainTextResponse(
            "429 Too Many Requests: too many failed logins from this address; try later.",
            status_code=429,
            headers={"retry-after": str(max(1, round(wait)))},
        )
    headers = {}
    if creds.basic_user is not None:
        headers["www-authenticate"] = 'Basic realm="pyqueue dashboard", charset="UTF-8"'
    hint = (
        "open the login URL the dashboard printed on start, or add ?token=YOUR_TOKEN once"
        if creds.token
        else "log in"
    )
    return PlainTextResponse(
        f"401 Unauthorized: the pyqueue dashboard needs credentials ({hint}).",
        status_code=401,
        headers=headers,
    )


class Authenticator:
    """Decides, from the headers alone, whether a request may go on."""

    def __init__(self, creds: Credentials, throttle: LoginThrottle | None = None) -> None:
        self.creds = creds
        self.throttle = throttle or LoginThrottle()
        self._session = creds.session() if creds.token is not None else None

    def check(self, request: Request) -> Response | None:
        """A response that stops the request here, or None to let it through."""
        if same(request.cookies.get(SESSION_COOKIE, ""), self._session):
            return None
        if not _presented(request):
            return _refusal(self.creds)
        address = request.client.host if request.client else "unknown"
        wait = self.throttle.wait(address)
        if wait > 0:
            return _refusal(self.creds, 429, wait)
        if same(request.query_params.get("token", ""), self.creds.token):
            self.throttle.succeeded(address)
            return self._trade_for_cookie(request)
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if (scheme.lower() == "bearer" and same(bearer, self.creds.token)) or (
            self.creds.basic_user is not None and _basic_ok(request, self.creds)
        ):
            self.throttle.succeeded(address)
            return None
        self.throttle.failed(address)
        return _refusal(self.creds)

    def _trade_for_cookie(self, request: Request) -> Response:
        """Swap the token in the address for a session cookie, and drop it from the address."""
        assert self._session is not None
        clean = URL(str(request.url)).remove_query_params("token")
        redirect = RedirectResponse(str(clean), status_code=303)
        redirect.set_cookie(
            SESSION_COOKIE,
            self._session,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return redirect
