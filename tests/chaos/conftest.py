"""Chaos fixtures, and the summary lines printed at the end of the pytest run.

Each scenario adds one line (enqueued, completed, executed more than once,
lost...) through `chaos_summary`; pytest_terminal_summary prints them all
after the results, so they show in CI output without `-s`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.chaos_harness import Fleet, harness_connect, jobs_per_scenario, prepare

SUMMARY = pytest.StashKey[list[str]]()


@pytest.fixture
def chaos_summary(request: pytest.FixtureRequest) -> Callable[[str], None]:
    lines = request.config.stash.setdefault(SUMMARY, [])
    return lines.append


@pytest.fixture
def chaos_db(dsn: str) -> Iterator[Any]:
    """The harness's connection to the test database, prepared for chaos (prepare)."""
    with harness_connect(dsn) as conn:
        prepare(conn)
        yield conn


@pytest.fixture
def fleets(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Make a Fleet of worker processes; every process left is killed at the end."""
    made: list[Fleet] = []

    def make(dsn: str, **options: Any) -> Fleet:
        made.append(Fleet(dsn, tmp_path, **options))
        return made[-1]

    yield make
    for fleet in made:
        fleet.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.write_sep("=", f"chaos summary (PYQUEUE_CHAOS_JOBS={jobs_per_scenario()})")
        for line in lines:
            terminalreporter.write_line(line)
