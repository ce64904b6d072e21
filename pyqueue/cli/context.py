"""What every command shares: the database chosen by the group options, and one-line errors."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

import click
import psycopg

from pyqueue import schema
from pyqueue.client import Queue
from pyqueue.connecting import with_connect_timeout
from pyqueue.database import Database, resolve
from pyqueue.errors import PyqueueError, first_line
from pyqueue.visible import visible

P = ParamSpec("P")
R = TypeVar("R")


class Context:
    """What the group options chose; the database is resolved on first use."""

    def __init__(
        self, url: str | None, data_dir: Path | None, connect_timeout: float | None = None
    ) -> None:
        self.url = url
        self.data_dir = data_dir
        self.connect_timeout = connect_timeout
        self._database: Database | None = None

    def resolved(self) -> Database:
        """The database, its URL carrying the connect timeout that every command uses."""
        found = resolve(self.url, self.data_dir)
        return Database(with_connect_timeout(found.url, self.connect_timeout), found.private)

    def database(self, *, migrate: bool = False) -> Database:
        """resolved(), migrated first if asked (always for the private server)."""
        if self._database is None:
            self._database = self.resolved()
            # The private server is ours: give it the schema without being asked.
            if migrate or self._database.private:
                schema.migrate(self._database.url)
        return self._database

    def queue(self) -> Queue:
        return Queue(self.database().url, connect_timeout=self.connect_timeout)


pass_context = click.make_pass_decorator(Context)


def friendly_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Report pyqueue and connection errors as one line on stderr, exit 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (PyqueueError, psycopg.Error, OSError) as error:
            # OSError: the environment (a file, a folder, an address) refused.
            click.echo(f"pyqueue: error: {visible(first_line(error))}", err=True)
            sys.exit(1)

    return wrapper


def seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


# The unique_mode values SQL takes (sql/12_unique.sql), offered by enqueue and limit.
UNIQUE_MODES = click.Choice(["until_purged", "pending", "active", "throttle", "debounce"])


class Seconds(click.ParamType[float, Any]):
    """A finite number of seconds within [low, high] (click's FloatRange lets nan through)."""

    name = "seconds"

    def __init__(self, low: float | None = None, high: float = 1e9) -> None:
        self.low = low
        self.high = high

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        low = -self.high if self.low is None else self.low
        if not math.isfinite(number) or not low <= number <= self.high:
            self.fail(
                f"{value!r} is not a number of seconds from {low:g} to {self.high:g}", param, ctx
            )
        return number


def parse_json(text: str, hint: str, what: str = "payload") -> Any:
    """The JSON document in `text`, or a usage error that says what is wrong with it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"{what} is not JSON: {error}", param_hint=hint) from None
    except RecursionError:
        raise click.BadParameter(
            f"{what} is JSON nested too deeply to read", param_hint=hint
        ) from None
    except ValueError as error:  # an integer of more digits than Python converts
        raise click.BadParameter(
            f"{what} is not usable JSON: {first_line(error)}", param_hint=hint
        ) from None


def read_payload(text: str | None, source: IO[str] | None) -> Any:
    """The payload: the JSON argument, or the file given (`-`: standard input)."""
    if (text is None) == (source is None):
        raise click.UsageError(
            "give the payload as JSON, or --payload-file (- for stdin), not both"
        )
    if source is not None:
        try:
            text = source.read()
        except UnicodeDecodeError as error:
            raise click.BadParameter(
                f"not UTF-8 text: {error}", param_hint="--payload-file"
            ) from None
        return parse_json(text, "--payload-file")
    assert text is not None
    if text == "-":
        return read_payload(None, sys.stdin)
    return parse_json(text, "JSON")
