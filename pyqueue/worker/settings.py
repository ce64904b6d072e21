"""A worker's settings, checked when given: a bad value fails at Worker(), not mid-run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyqueue.errors import InvalidArgument


@dataclass(frozen=True)
class Settings:
    concurrency: int
    batch_size: int
    poll_interval: float
    lease: float
    heartbeat_interval: float
    grace_period: float
    # Seconds between maintenance passes (pyqueue.maintain); None: no maintenance.
    maintenance_interval: float | None = None
    # Handler threads given up on (their job lost) that may still run before the
    # worker stops for a fresh start; Worker() sets it to concurrency by default.
    max_abandoned_threads: int = 4


def positive_int(name: str, value: object, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidArgument(f"{name} must be an integer from 1 to {maximum}, got {value!r}")
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
