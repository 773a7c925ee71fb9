"""Lake comparisons for the reliability tests and benchmarks: table content, Delta history, CLI runs in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from etl.config import Config
from etl.schemas import SCHEMAS

REPO = Path(__file__).resolve().parents[2]


def table_state(spark, cfg: Config) -> dict[str, tuple]:
    """{table: (current version, content fingerprint)} for every lake table that exists (run ids left out)."""
    from etl.io import delta

    out = {}
    for name in SCHEMAS:
        path = cfg.table_path(name)
        if delta.table_exists(spark, path):
            df = spark.read.format("delta").load(path)
            out[name] = (delta.current_version(spark, path), delta.fingerprint(df))
    return out


def table_versions(spark, cfg: Config) -> dict[str, int]:
    """{table: current Delta version} for every lake table that exists (an unchanged version = unchanged content)."""
    from etl.io import delta

    return {name: v for name in SCHEMAS if (v := delta.current_version(spark, cfg.table_path(name))) is not None}


def content(state: dict[str, tuple]) -> dict[str, tuple]:
    """The fingerprints of a table_state, without versions (two lakes with the same content compare equal)."""
    return {name: fp for name, (_, fp) in state.items()}


def history_problems(spark, cfg: Config) -> list[str]:
    """Duplicate writes in Delta history: appends, and consecutive versions with identical content."""
    from etl.io import delta

    problems = []
    for name in SCHEMAS:
        path = cfg.table_path(name)
        if not delta.table_exists(spark, path):
            continue
        rows = delta.history(spark, path)
        appends = [r["version"] for r in rows if r["operationParameters"].get("mode") == "Append"
                   and r["operation"] == "WRITE"]
        if appends and name != "embeddings":  # the embeddings cache is append-only by design (MERGE inserts)
            problems.append(f"{name}: append versions {appends}")
        previous = None
        for r in rows:
            if r["operation"] not in ("WRITE", "CREATE TABLE AS SELECT", "REPLACE TABLE AS SELECT", "MERGE"):
                continue
            df = spark.read.format("delta").option("versionAsOf", r["version"]).load(path)
            fp = delta.fingerprint(df)
            if previous is not None and fp == previous[1]:
                problems.append(f"{name}: version {r['version']} rewrote the content of version {previous[0]}")
            previous = (r["version"], fp)
    return problems


@dataclass
class CliRun:
    returncode: int
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def run_cli(args: list[str], env: dict | None = None, timeout: float = 900, cwd: Path = REPO) -> CliRun:
    """`python -m etl ARGS` in its own session (so a crash point can SIGKILL its whole process group)."""
    full_env = {**os.environ, **(env or {})}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "etl", *args], cwd=cwd, env=full_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise
    finally:
        _reap_group(proc.pid)
    return CliRun(proc.returncode, err, time.monotonic() - start)


def _reap_group(pgid: int) -> None:
    """Make sure no process of the run's group outlives it (a JVM of a killed driver exits on its own, soon)."""
    for _ in range(50):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
