"""A worker's settings, checked when given: a bad value fails at Worker(), not mid-run."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from pyqueue.errors import InvalidArgument


@dataclass(frozen=True)
class Settings:
    concurrency: int
    batch_size: int
    # Jobs held beyond the handler slots, claimed ahead to start as slots free up.
    prefetch: int
    poll_interval: float
    lease: float
    heartbeat_interval: float
    grace_period: float
    # Seconds between maintenance passes (pyqueue.maintain); None: no maintenance.
    maintenance_interval: float | None = None
    # Handler threads given up on (their job lost) that may still run before the
    # worker stops for a fresh start; Worker() sets it to concurrency by default.
    max_abandoned_threads: int = 4


def checked_settings(
    *,
    concurrency: int,
    batch_size: int,
    prefetch: int | None,
    poll_interval: float,
    lease: float,
    heartbeat_interval: float | None,
    grace_period: float,
    max_abandoned_threads: int | None,
    maintenance_interval: float | None,
) -> Settings:
    """Worker()'s settings, each checked; heartbeat every lease/3 and prefetch
    batch_size unless given."""
    lease = seconds("lease", lease)
    heartbeat = lease / 3 if heartbeat_interval is None else heartbeat_interval
    heartbeat = seconds("heartbeat_interval", heartbeat)
    if heartbeat >= lease:
        raise InvalidArgument(
            f"heartbeat_interval ({heartbeat:g} s) must be shorter than the lease "
            f"({lease:g} s), or leases expire between heartbeats"
        )
    batch_size = positive_int("batch_size", batch_size, 10000)
    return Settings(
        concurrency=positive_int("concurrency", concurrency, 10000),
        batch_size=batch_size,
        prefetch=batch_size if prefetch is None else count("prefetch", prefetch, 10000),
        poll_interval=seconds("poll_interval", poll_interval),
        lease=lease,
        heartbeat_interval=heartbeat,
        grace_period=seconds("grace_period", grace_period, allow_zero=True),
        max_abandoned_threads=positive_int(
            "max_abandoned_threads",
            concurrency if max_abandoned_threads is None else max_abandoned_threads,
            10000,
        ),
        maintenance_interval=(
            None
            if maintenance_interval is None
            else seconds("maintenance_interval", maintenance_interval)
        ),
    )


def positive_int(name: str, value: object, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidArgument(f"{name} must be an integer from 1 to {maximum}, got {value!r}")
    return value


def count(name: str, value: object, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidArgument(f"{name} must be an integer from 0 to {maximum}, got {value!r}")
    return value


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (value >= 0 if allow_zero else value > 0) or value > 86400 * 365:  # type: ignore[operator]
        need = "zero or more" if allow_zero else "more than zero"
        raise InvalidArgument(f"{name} must be a number of seconds, {need}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def queue_names(value: Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise InvalidArgument(f"queues must be a list of queue names, not the string {value!r}")
    names = list(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InvalidArgument(f"queues must be a non-empty list of queue names, got {value!r}")
    return names


def overridden(
    settings: Settings,
    *,
    concurrency: int | None,
    batch_size: int | None,
    prefetch: int | None,
    poll_interval: float | None,
    maintenance_interval: float | None,
    maintenance: bool,
) -> Settings:
    """Settings with these overrides (the CLI's options), each checked; None keeps one.

    maintenance=False turns the worker's maintenance passes off.
    """
    changes: dict[str, Any] = {}
    if concurrency is not None:
        changes["concurrency"] = positive_int("concurrency", concurrency, 10000)
    if batch_size is not None:
        changes["batch_size"] = positive_int("batch_size", batch_size, 10000)
    if prefetch is not None:
        changes["prefetch"] = count("prefetch", prefetch, 10000)
    if poll_interval is not None:
        changes["poll_interval"] = seconds("poll_interval", poll_interval)
    if maintenance_interval is not None:
        changes["maintenance_interval"] = seconds("maintenance_interval", maintenance_interval)
    if not maintenance:
        changes["maintenance_interval"] = None
    return dataclasses.replace(settings, **changes)


def work_queues(handlers: Collection[str], queues: list[str] | None) -> list[str]:
    """The queues a run claims: those asked for (each with a handler), else every handler's."""
    if not handlers:
        raise InvalidArgument(
            "no handlers registered: decorate a function with @worker.handler('queue')"
        )
    if queues is None:
        return sorted(handlers)
    missing = [q for q in queues if q not in handlers]
    if missing:
        raise InvalidArgument(
            f"no handler for queue(s) {', '.join(missing)}; "
            f"handlers exist for {', '.join(sorted(handlers))}"
        )
    return list(dict.fromkeys(queues))
