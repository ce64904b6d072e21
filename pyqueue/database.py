"""Which database a command talks to: DATABASE_URL, or the private server."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pyqueue.localserver import LocalServer, default_data_dir


@dataclass(frozen=True)
class Database:
    url: str
    private: bool  # True for the private local server that pyqueue manages


def resolve(url: str | None = None, data_dir: Path | None = None) -> Database:
    """The explicit URL, else $DATABASE_URL, else the private server (started if needed)."""
    url = url or os.environ.get("DATABASE_URL")
    if url:
        return Database(url, private=False)
    server = LocalServer(data_dir or default_data_dir())
    return Database(server.start(), private=True)
