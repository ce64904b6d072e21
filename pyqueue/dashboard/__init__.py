"""`pyqueue dashboard`: a web status page and JSON API over the pyqueue schema."""

from pyqueue.dashboard.app import create_app
from pyqueue.dashboard.security import Credentials, check_bind, credentials
from pyqueue.dashboard.server import serve, serve_in_background

__all__ = [
    "Credentials",
    "check_bind",
    "create_app",
    "credentials",
    "serve",
    "serve_in_background",
]
