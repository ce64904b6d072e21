"""Running the dashboard: in the foreground (the CLI) or on a background thread.

X-Forwarded-For and X-Forwarded-Proto are believed only from `trusted_proxy`:
uvicorn would otherwise believe them from any loopback client, so another user
of the machine could pose as a new address for each guess at the token.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from pyqueue.dashboard.app import create_app
from pyqueue.dashboard.auth import Credentials


def _server(
    database_url: str, host: str, port: int, creds: Credentials | None, trusted_proxy: str | None
) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(database_url, creds),
        host=host,
        port=port,
        log_level="warning",
        server_header=False,
        proxy_headers=trusted_proxy is not None,
        forwarded_allow_ips=trusted_proxy,
    )
    return uvicorn.Server(config)


def serve(
    database_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    creds: Credentials | None = None,
    trusted_proxy: str | None = None,
) -> None:
    """Serve until Ctrl-C; without `creds`, behind a random token nobody is told."""
    server = _server(database_url, host, port, creds, trusted_proxy)
    # uvicorn shuts down cleanly on Ctrl-C, then raises the signal again.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


@contextmanager
def serve_in_background(
    database_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    creds: Credentials | None = None,
    start_timeout: float = 30.0,
    trusted_proxy: str | None = None,
) -> Iterator[str]:
    """Serve on a thread of this process; yield the base URL, stop on exit.

    Port 0 takes a free port. For tests, and for applications that want the
    dashboard inside their own process; pass `creds` (e.g. `Credentials()`, a
    random token) to be able to log in.
    """
    server = _server(database_url, host, port, creds, trusted_proxy)
    thread = threading.Thread(target=server.run, name="pyqueue-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise RuntimeError("the dashboard did not start (see the log above)")
        time.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(10)
