"""Progress for long work: one updating line on a terminal, plain log lines otherwise.

Two sources:
- `track(stage, total)`: a stage counts its own rows (driver-side loops: shard writing, uploads).
- `stage_progress(spark, stage)`: the CLI wraps every stage in it; a daemon thread polls the SparkContext
  status tracker for the tasks of the active Spark stages. It is optional: Spark Connect sessions (Databricks
  standard/shared access mode) have no SparkContext, and then nothing is shown.

`ETL_PROGRESS=0` turns both off; `ETL_PROGRESS_INTERVAL` sets the seconds between plain log lines (default 30).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

log = logging.getLogger(__name__)

ENV_ENABLED = "ETL_PROGRESS"
ENV_INTERVAL = "ETL_PROGRESS_INTERVAL"
TTY_REFRESH_S = 1.0


def enabled() -> bool:
    """Progress is on unless ETL_PROGRESS is 0/false/off."""
    return os.environ.get(ENV_ENABLED, "1").strip().lower() not in ("0", "false", "off", "no")


def log_interval() -> float:
    """Seconds between plain progress log lines when the output is not a terminal."""
    try:
        return max(1.0, float(os.environ.get(ENV_INTERVAL, "30")))
    except ValueError:
        return 30.0


def format_duration(seconds: float | None) -> str:
    """`H:MM:SS` (or `?` when unknown)."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_line(stage: str, done: int, total: int | None, elapsed: float, unit: str = "rows") -> str:
    """`stage: done/total unit (pct) rate unit/s, ETA H:MM:SS`; without a total only done and rate."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if total:
        pct = 100.0 * done / total
        eta = (total - done) / rate if rate > 0 else None
        return (f"{stage}: {done:,}/{total:,} {unit} ({pct:.0f}%) {rate:,.1f} {unit}/s, "
                f"ETA {format_duration(eta)}")
    return f"{stage}: {done:,} {unit} {rate:,.1f} {unit}/s, elapsed {format_duration(elapsed)}"


class Tracker:
    """Counts work done for one stage and shows it: `\\r`-updated on a TTY, a log line every interval otherwise."""

    def __init__(self, stage: str, total: int | None = None, unit: str = "rows", stream: TextIO | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic,
                 tty: bool | None = None):
        self.stage, self.total, self.unit = stage, total, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = TTY_REFRESH_S if self.tty else (log_interval() if interval is None else interval)
        self.clock = clock
        self.start = clock()
        self.done = 0
        self._last_shown = self.start
        self._shown_on_tty = False
        self._on = enabled()

    def line(self) -> str:
        return format_line(self.stage, self.done, self.total, self.clock() - self.start, self.unit)

    def update(self, n: int = 1) -> None:
        """Add `n` units done; show progress when the interval has passed."""
        self.set(self.done + n)

    def set(self, done: int, total: int | None = None) -> None:
        """Set the units done (and optionally a new total); show progress when the interval has passed."""
        self.done = int(done)
        if total is not None:
            self.total = total
        now = self.clock()
        if now - self._last_shown >= self.interval:
            self._last_shown = now
            self.show()

    def show(self) -> None:
        if not self._on:
            return
        if self.tty:
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
            self._shown_on_tty = True
        else:
            log.info("progress %s", self.line())

    def close(self) -> None:
        """End the updating line on a terminal (the stage's own summary line follows)."""
        if self._on and self.tty and self._shown_on_tty:
            self.stream.write("\r\033[K" + self.line() + "\n")
            self.stream.flush()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(stage: str, total: int | None = None, unit: str = "rows") -> Tracker:
    """A Tracker for a stage's own loop: `with progress.track("export", n) as p: ... p.update(k)`."""
    return Tracker(stage, total, unit)


def status_tracker(spark):
    """The SparkContext status tracker, or None where there is no SparkContext (Spark Connect, Databricks shared)."""
    try:
        from pyspark.sql.utils import is_remote

        if is_remote():
            return None
    except ImportError:
        pass
    try:
        return spark.sparkContext.statusTracker()
    except Exception:  # noqa: BLE001 - Connect sessions raise on .sparkContext; progress is optional
        return None


def active_tasks(tracker) -> tuple[int, int]:
    """(completed, total) tasks over the Spark stages running now."""
    done = total = 0
    for stage_id in tracker.getActiveStageIds() or []:
        info = tracker.getStageInfo(stage_id)
        if info is not None:
            done += info.numCompletedTasks
            total += info.numTasks
    return done, total


class SparkPoller(threading.Thread):
    """Daemon thread: tasks of the active Spark stages, shown through a Tracker (unit `tasks`)."""

    def __init__(self, tracker, stage: str, stream: TextIO | None = None):
        super().__init__(name=f"progress-{stage}", daemon=True)
        self.status = tracker
        self.view = Tracker(stage, None, "tasks", stream)
        self.stop_event = threading.Event()
        self.finished_tasks = 0  # tasks of Spark stages that are no longer active
        self._seen: dict[int, int] = {}

    def poll(self) -> None:
        ids = set(self.status.getActiveStageIds() or [])
        for gone in set(self._seen) - ids:
            self.finished_tasks += self._seen.pop(gone)
        done = total = 0
        for stage_id in ids:
            info = self.status.getStageInfo(stage_id)
            if info is not None:
                self._seen[stage_id] = info.numTasks
                done += info.numCompletedTasks
                total += info.numTasks
        self.view.set(self.finished_tasks + done, self.finished_tasks + total if total else None)

    def run(self) -> None:
        while not self.stop_event.wait(min(self.view.interval, TTY_REFRESH_S)):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a failed poll (e.g. session stopping) never fails the stage
                return

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)
        self.view.close()


class ClearLine(logging.Filter):
    """Erase the updating progress line before a log record is printed on the same terminal."""

    def __init__(self, view: Tracker):
        super().__init__()
        self.view = view

    def filter(self, record: logging.LogRecord) -> bool:
        if self.view._shown_on_tty:
            self.view.stream.write("\r\033[K")
        return True


@contextmanager
def stage_progress(spark, stage: str) -> Iterator[SparkPoller | None]:
    """Show Spark task progress while a stage runs, when a SparkContext is reachable and progress is on."""
    tracker = status_tracker(spark) if enabled() and spark is not None else None
    if tracker is None:
        yield None
        return
    poller = SparkPoller(tracker, stage)
    handlers = logging.getLogger().handlers if poller.view.tty else []
    clear = ClearLine(poller.view)
    for handler in handlers:
        handler.addFilter(clear)
    poller.start()
    try:
        yield poller
    finally:
        poller.stop()
        for handler in handlers:
            handler.removeFilter(clear)
