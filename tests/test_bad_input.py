"""Every case of tests/bad_input.py, through SQL, both Python clients and the CLI.

Each interface must refuse the case with the words SQL uses, and leave the
tables as they were. One test per interface, on one database, collecting every
case that went wrong, so that a failure lists them all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from click.testing import CliRunner

from pyqueue import AsyncQueue, Queue
from pyqueue.cli import main
from tests.bad_input import CASES
from tests.helpers import contents, enqueue, sqlstate_of

Conn = psycopg.Connection[Any]


def test_the_table_covers_each_interface():
    assert len({case.what for case in CASES}) == len(CASES)
    assert sum(case.python is not None for case in CASES) >= 30
    assert sum(case.cli is not None for case in CASES) >= 15


def test_through_sql(db: Conn) -> None:
    enqueue(db, payload='{"already": "here"}')
    wrong = []
    for case in CASES:
        before = contents(db)
        error = sqlstate_of(db, case.sql, case.params or None)
        message = error.diag.message_primary or ""
        wrote = contents(db) != before
        if error.sqlstate != case.sqlstate or case.message not in message or wrote:
            wrong.append(f"{case.what}: {error.sqlstate} {message!r}, wrote: {wrote}")
    assert wrong == []


def test_through_python(db: Conn, queue: Queue) -> None:
    enqueue(db, payload='{"already": "here"}')
    wrong = []
    for case in CASES:
        if case.python is None:
            continue
        before = contents(db)
        try:
            case.python(queue)
        except Exception as error:
            raised: BaseException | None = error
        else:
            raised = None
        wrote = contents(db) != before
        if not isinstance(raised, case.error) or case.message not in str(raised) or wrote:
            wrong.append(f"{case.what}: {type(raised).__name__} {raised}, wrote: {wrote}")
    assert wrong == []


class Blocking:
    """AsyncQueue's methods, called as Queue's are, each run to its end on `loop`."""

    def __init__(self, queue: AsyncQueue, loop: asyncio.AbstractEventLoop) -> None:
        self.queue, self.loop = queue, loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.queue, name)
        return lambda *args, **kwargs: self.loop.run_until_complete(method(*args, **kwargs))


def test_through_asyncio(db: Conn, dsn: str) -> None:
    # A plain test that runs its own loop, so that each case calls AsyncQueue as it calls Queue.
    enqueue(db, payload='{"already": "here"}')
    loop = asyncio.new_event_loop()
    queue = AsyncQueue(dsn)
    try:
        wrong = []
        for case in CASES:
            if case.python is None:
                continue
            before = contents(db)
            try:
                case.python(Blocking(queue, loop))  # type: ignore[arg-type]
            except Exception as error:
                raised: BaseException | None = error
            else:
                raised = None
            wrote = contents(db) != before
            if not isinstance(raised, case.error) or case.message not in str(raised) or wrote:
                wrong.append(f"{case.what}: {type(raised).__name__} {raised}, wrote: {wrote}")
        assert wrong == []
    finally:
        loop.run_until_complete(queue.close())
        loop.close()


def test_through_the_cli(db: Conn, dsn: str) -> None:
    enqueue(db, payload='{"already": "here"}')
    runner = CliRunner()
    wrong = []
    for case in CASES:
        if case.cli is None:
            continue
        before = contents(db)
        result = runner.invoke(main, list(case.cli), env={"DATABASE_URL": dsn})
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        wrote = contents(db) != before
        if (
            result.exit_code != 1
            or case.message not in result.stderr
            or len(lines) != 1
            or "Traceback" in result.output
            or wrote
        ):
            wrong.append(f"{case.what}: exit {result.exit_code}, {result.stderr!r}, wrote: {wrote}")
    assert wrong == []
