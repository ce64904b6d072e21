"""`pyqueue dashboard`: a web status page and JSON API over the pyqueue schema."""

from pyqueue.dashboard.app import create_app
from pyqueue.dashboard.auth import Credentials, credentials, login_url
from pyqueue.dashboard.server import serve, serve_in_background

__all__ = [
    "Credentials",
    "create_app",
    "credentials",
    "login_url",
    "serve",
    "serve_in_background",
]
