"""Chaos: the primary killed mid-drain and its synchronous standby promoted.

A primary and a hot standby on loopback ports, the standby synchronous
(synchronous_standby_names = '*', synchronous_commit = on: a commit is
acknowledged once the standby has it). Workers and a producer use one
multi-host connection string with target_session_attrs=read-write, so each
finds whichever server is the primary. Mid-drain the primary's postmaster
gets kill -9 and the standby is promoted. Every enqueue the producer had
acknowledged must complete, none twice; the producer retries an enqueue
whose outcome was unknown with the same idempotency key, as the README
advises. The time from the primary's death to the first completion on the
new primary is printed in the chaos summary.

Size: PYQUEUE_CHAOS_JOBS / 4 jobs (50 in CI's short form).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyqueue
from tests.chaos.chaos_harness import (
    QUEUE,
    Tally,
    durations,
    harness_connect,
    jobs_per_scenario,
    prepare,
    unfinished,
    wait_drained,
)
from tests.chaos.replication import DATABASE, Node, multi_host_url, new_password

pytestmark = pytest.mark.chaos

N = max(20, jobs_per_scenario() // 4)
DRAIN_SECONDS = 90 + N * 0.2
# Not needed for durability in this drill (no machine crashes), and faster.
FAST = {"fsync": "off", "full_page_writes": "off"}
# A standby whose primary is gone retries every wal_retrieve_retry_interval
# (5 s by default), and only notices a promotion between tries.
STANDBY = {**FAST, "wal_retrieve_retry_interval": "200ms"}
# Set once the standby streams: before, every commit would wait for it forever.
SYNCHRONOUS = (
    "ALTER SYSTEM SET synchronous_standby_names = '*'",
    "ALTER SYSTEM SET synchronous_commit = 'on'",
    "SELECT pg_reload_conf()",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def pair() -> Iterator[tuple[Node, Node]]:
    """A running primary and its synchronous hot standby, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="pyqueue-failover-"))
    base.chmod(0o755)
    password = new_password()
    primary = Node(base / "primary", free_port(), password)
    standby = Node(base / "standby", free_port(), password)
    try:
        primary.initdb()
        primary.start(FAST)
        with primary.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        standby.clone_of(primary)
        # The copy has no synchronous_standby_names: once promoted, the
        # standby has no standby of its own to wait for.
        standby.start(STANDBY)
        with primary.connect() as conn:
            for statement in SYNCHRONOUS:
                conn.execute(statement)
        yield primary, standby
    finally:
        for node in (primary, standby):
            node.kill9()
        shutil.rmtree(base, ignore_errors=True)


class Producer(threading.Thread):
    """Enqueues the given jobs one by one, each with its own idempotency key.

    An enqueue that fails for want of a database, or whose outcome is
    unknown, is retried with the same key until it is acknowledged: the key
    makes the retry safe. `acknowledged` holds the ids the database returned.
    """

    def __init__(self, url: str, seconds: list[float], pace: float) -> None:
        super().__init__(daemon=True)
        self.url, self.seconds, self.pace = url, seconds, pace
        self.acknowledged: list[int] = []
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with pyqueue.Queue(self.url, connect_timeout=2) as q:
                for i, duration in enumerate(self.seconds):
                    self.acknowledged.append(self._enqueue(q, i, duration))
                    time.sleep(self.pace)
        except BaseException as error:  # reported by the test, not lost in a thread
            self.error = error

    def _enqueue(self, q: pyqueue.Queue, i: int, duration: float) -> int:
        deadline = time.monotonic() + 60
        while True:
            try:
                return q.enqueue(
                    QUEUE, {"seconds": duration}, idempotency_key=f"failover-{i}", max_attempts=25
                )
            except (pyqueue.CannotConnect, pyqueue.ConnectionLost, pyqueue.ReadOnlyDatabase):
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                time.sleep(0.1)


def test_primary_killed_and_synchronous_standby_promoted(pair, fleets, chaos_summary):
    primary, standby = pair
    url = multi_host_url([primary, standby], primary.password)
    with harness_connect(url) as conn:
        deadline = time.monotonic() + 30
        while (state := conn.execute("SELECT state, sync_state FROM pg_stat_replication")
               .fetchall()) != [("streaming", "sync")]:  # fmt: skip
            assert time.monotonic() < deadline, f"the standby is not synchronous: {state}"
            time.sleep(0.1)
    pyqueue.migrate(url)
    with harness_connect(url) as conn:
        prepare(conn)

    fleet = fleets(url, lease=3.0)
    fleet.start(2)
    fleet.wait_ready()
    # The workers keep up with the producer: the kill falls mid-way through both.
    producer = Producer(url, durations(N, 0.05, 0.15, seed=7), pace=0.05)
    started = time.monotonic()
    producer.start()

    # Kill the primary once a third of the jobs are done and the producer is mid-way.
    with harness_connect(url) as conn:
        deadline = time.monotonic() + DRAIN_SECONDS
        while (
            conn.execute("SELECT count(*) FROM pyqueue.jobs WHERE status = 'completed'").fetchone()[
                0
            ]
            < N // 3
        ):
            assert time.monotonic() < deadline, "too few jobs done\n" + fleet.log_tails()
            time.sleep(0.05)
        before = len(producer.acknowledged)
    assert primary.postmaster_pid() is not None
    primary.kill9()
    died_at = time.time()
    standby.promote()
    promoted_after = time.time() - died_at

    producer.join(DRAIN_SECONDS)
    assert producer.error is None, f"the producer gave up: {producer.error!r}"
    assert len(producer.acknowledged) == N
    with harness_connect(url) as conn:
        assert conn.info.port == standby.port
        wait_drained(conn, DRAIN_SECONDS, fleet)
        fleet.assert_all_alive()
        fleet.stop()
        tally = Tally.of(conn, producer.acknowledged, [])
        first = conn.execute(
            "SELECT extract(epoch FROM min(at)) FROM chaos_completions WHERE at > to_timestamp(%s)",
            [died_at],
        ).fetchone()[0]
        left = unfinished(conn)
    assert first is not None, "no completion on the new primary"
    gap = float(first) - died_at
    tally.check(reruns_allowed=True)
    assert left == 0
    summary = tally.line(
        "primary killed, standby promoted",
        f"{before} of {N} enqueued before the kill, producer retries {producer.retries}, "
        f"promoted {promoted_after:.2f} s after the kill, first completion on the new primary "
        f"{gap:.2f} s after the kill ({gap - promoted_after:.2f} s after the promotion), "
        f"{time.monotonic() - started:.1f} s in all",
    )
    print(summary)
    chaos_summary(summary)
