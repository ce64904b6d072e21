"""Which POSTs are genuine, and the headers every response carries.

- Actions are POSTs that must carry this process's CSRF token (form field or
  X-CSRF-Token header) and, when the browser names one, a same-origin Origin
  or Referer: same scheme and same host and port.
- Every response forbids inline scripts and framing (Content-Security-Policy).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers

from pyqueue.dashboard.auth import same

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
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


def _same_site(url: str, scheme: str, host: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() == scheme and parts.netloc.lower() == host


def same_origin(headers: Headers, scheme: str) -> bool:
    """False when the browser says the request came from another site.

    Origin is checked when present, else Referer; a client that sends neither
    (curl, an application) is judged by its CSRF token alone. `scheme` is the
    one this request arrived by (http or https).
    """
    host = headers.get("host", "").lower()
    origin = headers.get("origin")
    if origin is not None:
        return origin != "null" and _same_site(origin, scheme, host)
    referer = headers.get("referer")
    if referer is not None:
        return _same_site(referer, scheme, host)
    return True


def csrf_ok(headers: Headers, scheme: str, form_token: str | None, expected: str) -> bool:
    given = headers.get(CSRF_HEADER) or form_token or ""
    return same(given, expected) and same_origin(headers, scheme)
