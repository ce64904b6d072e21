"""The ASGI middleware in front of every endpoint: limits, login, headers, last resort.

In this order, before anything reads the request body:
- a declared body over MAX_BODY_BYTES is refused (413) unread, and a body
  sent without a length is cut off (413) as soon as it passes the limit;
- the request must be logged in (auth.py);
- every response, errors included, carries the security headers;
- an error nothing else handled becomes a plain 500 (logged), so no
  exception escapes without those headers.
"""

from __future__ import annotations

import logging

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyqueue.dashboard.auth import Authenticator, Credentials
from pyqueue.dashboard.security import SECURITY_HEADERS

# The actions' forms carry a CSRF token and nothing else; nothing needs more.
MAX_BODY_BYTES = 64 * 1024

log = logging.getLogger("pyqueue.dashboard")


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, f"request body larger than {MAX_BODY_BYTES} bytes")


def _declared_too_large(request: Request) -> bool:
    length = request.headers.get("content-length")
    # The HTTP server has already refused a length that is not a number.
    return length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES


def limited(receive: Receive) -> Receive:
    """`receive` that raises BodyTooLarge once the body read so far passes the limit."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise BodyTooLarge()
        return message

    return receive_limited


class Guard:
    """ASGI middleware: body limit, authentication, security headers, last-resort 500."""

    def __init__(self, app: ASGIApp, creds: Credentials) -> None:
        self.app = app
        self.auth = Authenticator(creds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        request = Request(scope)
        stop: Response | None = None
        if _declared_too_large(request):
            stop = PlainTextResponse(str(BodyTooLarge().detail), status_code=413)
        else:
            stop = self.auth.check(request)
        if stop is not None:
            await stop(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, limited(receive), send_with_headers)
        except BodyTooLarge as error:
            if started:
                raise
            await PlainTextResponse(str(error.detail), 413)(scope, receive, send_with_headers)
        except Exception:
            log.exception("the dashboard failed on %s %s", request.method, request.url.path)
            if started:
                raise
            response = PlainTextResponse("500 Internal Server Error", status_code=500)
            await response(scope, receive, send_with_headers)
