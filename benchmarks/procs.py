"""Start worker processes (benchmarks.workerproc), stop them, read their ledgers."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.config import QUEUE, Config
from benchmarks.workerproc import Note, read_ledgers

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcesses:
    """`count` real worker processes of one kind ("pyqueue" or "raw")."""

    def __init__(
        self, kind: str, dsn: str, config: Config, count: int, poll_interval: float = 5.0
    ) -> None:
        self.kind = kind
        self._dir = Path(tempfile.mkdtemp(prefix=f"pyqueue-bench-{kind}-"))
        self.ledgers = [self._dir / f"ledger-{i}.txt" for i in range(count)]
        self._logs = [self._dir / f"log-{i}.txt" for i in range(count)]
        self._ready = [self._dir / f"ready-{i}" for i in range(count)]
        self._go = self._dir / "go"
        options = [
            "--queue", QUEUE,
            "--batch-size", str(config.batch_size),
            "--concurrency", str(config.concurrency),
            "--poll-interval", str(poll_interval),
        ]  # fmt: skip
        if config.async_handler:
            options.append("--async-handler")
        if config.handler_seconds:
            options += ["--handler-seconds", str(config.handler_seconds)]
        if config.prefetch is not None:
            options += ["--prefetch", str(config.prefetch)]
        self._commands = [
            [
                sys.executable, "-m", "benchmarks.workerproc", kind, dsn, str(ledger), *options,
                "--ready", str(ready), "--go", str(self._go),
            ]
            for ledger, ready in zip(self.ledgers, self._ready, strict=True)
        ]  # fmt: skip
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 60.0) -> None:
        """Start the processes; once every one is ready, let them all go at once.

        Without the wait, one process could drain the queue while another is
        still starting, and a stop would then find that one without its SIGTERM
        handler (no ledger) and the run measured with fewer processes than stated.
        """
        for command, log in zip(self._commands, self._logs, strict=True):
            with log.open("wb") as out:
                self._procs.append(
                    subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
                )
        wait_until(
            lambda: all(ready.exists() for ready in self._ready),
            timeout,
            f"{self.kind} worker processes to start",
            interval=0.01,
            alive=self.check_alive,
        )
        self._go.touch()

    def check_alive(self) -> None:
        for proc, log in zip(self._procs, self._logs, strict=True):
            if proc.poll() is not None:
                output = log.read_text()[-2000:]
                raise RuntimeError(f"{self.kind} worker exited early ({proc.returncode}): {output}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then wait; SIGKILL whatever is still there after `timeout`."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def notes(self) -> list[Note]:
        missing = [str(p) for p in self.ledgers if not p.exists()]
        if missing:
            logs = "\n".join(log.read_text()[-2000:] for log in self._logs if log.exists())
            raise RuntimeError(f"{self.kind} worker wrote no ledger ({missing}):\n{logs}")
        return read_ledgers(self.ledgers)

    def cleanup(self) -> None:
        for path in [*self.ledgers, *self._logs, *self._ready, self._go]:
            path.unlink(missing_ok=True)
        self._dir.rmdir()


@contextmanager
def running(
    kind: str, dsn: str, config: Config, count: int, poll_interval: float = 5.0
) -> Iterator[WorkerProcesses]:
    """Worker processes that are stopped (and their files removed) on leaving."""
    procs = WorkerProcesses(kind, dsn, config, count, poll_interval)
    try:
        procs.start()
        yield procs
    finally:
        procs.stop()
    # Removed only after a normal exit: the notes are read inside the block.
    procs.cleanup()


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.25,
    alive: Callable[[], None] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
