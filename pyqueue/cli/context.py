"""What every command shares: the database chosen by the group options, and one-line errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
import psycopg

from pyqueue import schema
from pyqueue.client import Queue
from pyqueue.database import Database, resolve
from pyqueue.errors import PyqueueError, first_line
from pyqueue.visible import visible

P = ParamSpec("P")
R = TypeVar("R")


class Context:
    """What the group options chose; the database is resolved on first use."""

    def __init__(self, url: str | None, data_dir: Path | None) -> None:
        self.url = url
        self.data_dir = data_dir
        self._database: Database | None = None

    def database(self, *, migrate: bool = False) -> Database:
        if self._database is None:
            self._database = resolve(self.url, self.data_dir)
            # The private server is ours: give it the schema without being asked.
            if migrate or self._database.private:
                schema.migrate(self._database.url)
        return self._database

    def queue(self) -> Queue:
        return Queue(self.database().url)


pass_context = click.make_pass_decorator(Context)


def friendly_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Report pyqueue and connection errors as one line on stderr, exit 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (PyqueueError, psycopg.Error) as error:
            click.echo(f"pyqueue: error: {visible(first_line(error))}", err=True)
            sys.exit(1)

    return wrapper


def seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)
