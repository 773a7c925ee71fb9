"""Crash points for the crash-restart tests: `ETL_TEST_KILL_AT=<stage>:<point>[:<table>]` SIGKILLs the run there.

Inert when the variable is unset (one dict lookup). Points:
  start         stage boundary, before the stage runs (etl.cli.run_stage)
  end           stage boundary, after the stage returned (etl.cli.run_stage)
  before_write  in etl.io.delta.write_table, before Spark writes the table
  during_write  a timer SIGKILLs the run ETL_TEST_KILL_DELAY_S seconds (default 0.5) after Spark starts writing
  after_write   in etl.io.delta.write_table, after the Delta commit, before the stage goes on
`<table>` (optional) picks the write; several points may be given, comma-separated (the first reached wins).
The whole process group is killed when this process leads it (driver, JVM and Python workers die together,
as on a machine crash); otherwise only this process.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

ENV = "ETL_TEST_KILL_AT"
DELAY_ENV = "ETL_TEST_KILL_DELAY_S"
POINTS = ("start", "end", "before_write", "during_write", "after_write")

log = logging.getLogger(__name__)


def _armed(stage: str, point: str, table: str = "") -> bool:
    spec = os.environ.get(ENV)
    if not spec:
        return False
    for item in spec.split(","):
        parts = item.strip().split(":")
        if len(parts) >= 2 and parts[0] == stage and parts[1] == point and (len(parts) < 3 or parts[2] == table):
            return True
    return False


def kill_now(where: str) -> None:
    """SIGKILL this run (its process group when it leads one) after saying where, for the test to check."""
    sys.stderr.write(f"{ENV}: killing the run at {where}\n")
    sys.stderr.flush()
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def crash_point(stage: str, point: str, table: str = "") -> None:
    """Kill the run here if ETL_TEST_KILL_AT names this point; `during_write` arms a timer instead."""
    if not _armed(stage, point, table):
        return
    where = f"{stage}:{point}" + (f":{table}" if table else "")
    if point == "during_write":
        timer = threading.Timer(float(os.environ.get(DELAY_ENV, "0.5")), kill_now, args=(where,))
        timer.daemon = True
        timer.start()
        return
    kill_now(where)
