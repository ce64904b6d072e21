"""Scenario sizes: the full run (under 10 minutes with a 5-minute soak) and --quick."""

from __future__ import annotations

from dataclasses import dataclass

QUEUE = "bench"


@dataclass(frozen=True)
class Config:
    # Worker shape, the same for pyqueue and the baseline.
    batch_size: int = 100
    # pyqueue's handler slots, and its handler kind; the raw loop runs its
    # batch inline. Prefetch None: the worker's default.
    concurrency: int = 100
    async_handler: bool = True
    prefetch: int | None = None
    # Seconds each pyqueue handler takes (0: returns at once); the handlers
    # scenario sets it for its runs.
    handler_seconds: float = 0.0
    # 1. enqueue: seconds per side, split into alternating rounds so that
    # drift in the machine's load falls on both sides alike; enough rounds that
    # one slow round moves the ratio little.
    enqueue_seconds: float = 12.0
    enqueue_rounds: int = 6
    enqueue_batch: int = 1000
    # 2. drain: runs per side and number of processes, alternating which side
    # goes first; the median run is reported, so that one run slowed by a
    # neighbour on the machine does not decide the figure (an odd number, so
    # the median is a run that happened).
    drain_jobs: int = 50_000
    drain_processes: tuple[int, ...] = (1, 2, 4)
    drain_rounds: int = 5
    # One process with few slots: each slot must find its next job waiting.
    narrow_concurrency: int = 10
    # 2b. handlers: handlers taking handler_time, async def and plain, at each
    # concurrency, against the c/t limit (or the no-op drain rate if lower).
    handler_time: float = 0.002
    handler_concurrency: tuple[int, ...] = (10, 100)
    handler_jobs: int = 20_000
    handler_rounds: int = 3
    # 3. latency
    latency_jobs: int = 500
    latency_interval: float = 0.01
    # 4. backlog: jobs due on the measured queue, total jobs in the table, and
    # rounds per side and size of claim+complete, each topped up again afterwards
    backlog_due: int = 10_000
    backlog_small: int = 10_000
    backlog_large: int = 1_000_000
    backlog_rounds: int = 12
    backlog_round_jobs: int = 3_000
    # 5. soak
    soak_seconds: float = 300.0
    soak_rate: float | None = None  # jobs/s; None: a share of the measured drain rate
    # Both sides soak at once on one machine, each at this share of pyqueue's
    # drain rate (measured alone). It must leave both sides headroom on a busy
    # machine: a side that falls behind measures a growing backlog, not steady
    # work.
    soak_rate_share: float = 0.15
    soak_window: float = 60.0  # "first minute" / "last minute"

    @property
    def soak_window_seconds(self) -> float:
        return min(self.soak_window, self.soak_seconds / 5)


FULL = Config()

QUICK = Config(
    enqueue_seconds=0.6,
    enqueue_rounds=2,
    drain_jobs=2_000,
    drain_rounds=1,
    handler_jobs=1_000,
    handler_rounds=1,
    latency_jobs=50,
    backlog_due=2_000,
    backlog_small=2_000,
    backlog_large=50_000,
    backlog_rounds=2,
    backlog_round_jobs=500,
    soak_seconds=10.0,
)
