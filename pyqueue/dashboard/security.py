"""The dashboard's guards: who may connect, and which POSTs are genuine.

- On loopback without credentials, only loopback Host names are served, so a
  web page cannot reach the dashboard through DNS rebinding.
- Any other address needs a token or basic-auth credentials, given on start.
  A browser hands the token once as ?token=...; it then lives in an HttpOnly,
  SameSite=Strict cookie. API clients send `Authorization: Bearer <token>`.
- Actions are POSTs that must carry this process's CSRF token (form field or
  X-CSRF-Token header) and, when the browser names one, a same-origin
  Origin or Referer.
- Every response forbids inline scripts and framing (Content-Security-Policy).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import URL, Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyqueue.errors import InvalidArgument

TOKEN_COOKIE = "pyqueue_dashboard_token"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Credentials:
    """What a request must present; empty means nothing (loopback only)."""

    token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = None

    @property
    def required(self) -> bool:
        return self.token is not None or self.basic_user is not None


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def credentials(token: str | None, basic_auth: str | None) -> Credentials:
    """Check the start options; basic_auth is USER:PASSWORD."""
    if token is not None and len(token) < 16:
        raise InvalidArgument("--token must be at least 16 characters long")
    if basic_auth is None:
        return Credentials(token=token)
    user, colon, password = basic_auth.partition(":")
    if not colon or not user or len(password) < 8:
        raise InvalidArgument(
            "--basic-auth must be USER:PASSWORD with a password of at least 8 characters"
        )
    return Credentials(token=token, basic_user=user, basic_password=password)


def check_bind(host: str, creds: Credentials) -> None:
    """Refuse to serve a non-loopback address without credentials."""
    if not is_loopback(host) and not creds.required:
        raise InvalidArgument(
            f"refusing to serve the dashboard on {host}, which is not a loopback address,"
            " without credentials: give --token TOKEN or --basic-auth USER:PASSWORD"
            " (or bind to 127.0.0.1)"
        )


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def _basic_ok(request: Request, creds: Credentials) -> bool:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared, always, so the timing tells nothing about which was wrong.
    return _same(user, creds.basic_user) & _same(password, creds.basic_password)


def _token_ok(request: Request, creds: Credentials) -> bool:
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _same(bearer, creds.token):
        return True
    return _same(request.cookies.get(TOKEN_COOKIE, ""), creds.token)


def _refusal(request: Request, creds: Credentials) -> Response:
    """401, with the way in: a basic-auth prompt or how to pass the token."""
    headers = {}
    if creds.basic_user is not None:
        headers["www-authenticate"] = 'Basic realm="pyqueue dashboard", charset="UTF-8"'
    hint = "open this address with ?token=YOUR_TOKEN once" if creds.token else "log in"
    return PlainTextResponse(
        f"401 Unauthorized: the pyqueue dashboard needs credentials ({hint}).",
        status_code=401,
        headers=headers,
    )


class Guard:
    """ASGI middleware: Host check, authentication and security headers."""

    def __init__(self, app: ASGIApp, creds: Credentials) -> None:
        self.app = app
        self.creds = creds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        response = self._check(request)
        if response is not None:
            await response(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)

    def _check(self, request: Request) -> Response | None:
        """A response that stops the request here, or None to let it through."""
        if not self.creds.required:
            if not is_loopback(request.url.hostname or ""):
                return PlainTextResponse(
                    "400 Bad Request: this dashboard answers only to loopback host names",
                    status_code=400,
                )
            return None
        if self.creds.token is not None and _same(
            request.query_params.get("token", ""), self.creds.token
        ):
            # Trade the token in the address for a cookie, and drop it from the address.
            clean = URL(str(request.url)).remove_query_params("token")
            redirect = RedirectResponse(str(clean), status_code=303)
            redirect.set_cookie(
                TOKEN_COOKIE,
                self.creds.token,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return redirect
        if _token_ok(request, self.creds) or (
            self.creds.basic_user is not None and _basic_ok(request, self.creds)
        ):
            return None
        return _refusal(request, self.creds)


def same_origin(headers: Headers) -> bool:
    """False when the browser says the request came from another site.

    Origin is checked when present, else Referer; a client that sends neither
    (curl, an application) is judged by its CSRF token alone.
    """
    host = headers.get("host", "").lower()
    origin = headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc.lower() == host
    referer = headers.get("referer")
    if referer is not None:
        return urlsplit(referer).netloc.lower() == host
    return True


def csrf_ok(headers: Headers, form_token: str | None, expected: str) -> bool:
    given = headers.get(CSRF_HEADER) or form_token or ""
    return _same(given, expected) and same_origin(headers)
