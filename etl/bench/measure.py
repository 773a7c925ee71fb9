"""Per-step measurements for benchmarks: wall and CPU time, peak memory, Spark shuffle bytes.

- CPU seconds: user + system time of the whole process tree (this Python driver, the local JVM, the Python
  workers it forks), from psutil. Every process seen in the tree is polled every `interval` seconds and its last
  value kept, because Spark kills idle Python workers and their time does not reliably reach a parent's
  children-time counters (a controlled 10 CPU-s burn read 6 s that way); only a process that starts and ends
  between two polls is missed. On a shared machine wall time depends on the neighbours; CPU time much less, so
  reports give both.
- Peak memory: the largest sum of RSS over the process tree, sampled every `interval` seconds (shared pages of
  forked Python workers are counted once per worker, so it is an upper bound), split into JVM and Python.
- Spark metrics: every step runs in its own job group; afterwards the jobs of the group give their stage ids
  (`statusTracker`), and the driver's status store (`sc._jsc.sc().statusStore().lastStageAttempt(id)`, the data
  behind the UI's stage page, kept even with the UI off) gives shuffle read/write bytes and executor CPU time.
  Without a SparkContext (Spark Connect) these are left out. `input_bytes` is Spark's input metric: it counts
  reads of cached (in-memory) blocks too, so a step that caches a frame and queries it 30 times reports its size
  30 times (verify at 20k: 2.9 GB "input" from a 74 MB cached release).
- Bytes read from storage: `fs_read_bytes` is the growth of Hadoop's FileSystem statistics in this JVM over the
  step (Parquet files, the Delta log, JSON and CSV sources; every scheme summed, per scheme in
  `fs_read_bytes_by_scheme`). In local mode the tasks run in this JVM, so it is every read of the step; on a
  cluster it is the driver's reads only (`fs_read_scope` says which). Python's own file reads are not in it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is in the dev environment; measurements degrade without it
    psutil = None

MB = 1024 * 1024


def _tree_root():
    """The top of this job's process tree: the JVM when spark-submit started this driver, else this process."""
    me = psutil.Process()
    parent = me.parent()
    if os.environ.get("ETL_SPARK_SUBMIT") == "1" and parent is not None and "java" in parent.name().lower():
        return parent
    return me


def _tree() -> list:
    root = _tree_root()
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def cpu_snapshot() -> dict[tuple[int, float], float]:
    """(pid, start time) -> own CPU seconds used so far, for every process of the tree."""
    out = {}
    for proc in _tree() if psutil else []:
        try:
            t = proc.cpu_times()
            out[(proc.pid, proc.create_time())] = t.user + t.system
        except psutil.Error:
            continue
    return out


def rss_snapshot() -> dict[str, float]:
    """RSS in MB of the tree: total, jvm, python."""
    jvm = py = 0
    for proc in _tree() if psutil else []:
        try:
            rss = proc.memory_info().rss
            name = proc.name().lower()
        except psutil.Error:
            continue
        if "java" in name:
            jvm += rss
        else:
            py += rss
    return {"total": (jvm + py) / MB, "jvm": jvm / MB, "python": py / MB}


class _RssSampler(threading.Thread):
    """Polls the tree: peak RSS, and the last CPU value of every process seen (see the module docstring)."""

    def __init__(self, interval: float):
        super().__init__(daemon=True, name="rss-sampler")
        self.interval, self.stop_event = interval, threading.Event()
        self.peak = {"total": 0.0, "jvm": 0.0, "python": 0.0}
        self.first = cpu_snapshot()
        self.last = dict(self.first)

    def sample(self) -> None:
        snap = rss_snapshot()
        if snap["total"] > self.peak["total"]:
            self.peak = snap
        self.last.update(cpu_snapshot())

    def cpu_seconds(self) -> float:
        return sum(v - self.first.get(key, 0.0) for key, v in self.last.items())

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)


def spark_group_metrics(spark, group: str) -> dict:
    """Shuffle bytes, executor CPU/run time, job and stage counts of a job group (empty without SparkContext)."""
    try:
        sc = spark.sparkContext
        tracker, store = sc.statusTracker(), sc._jsc.sc().statusStore()
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext; metrics are optional
        return {}
    totals = {"shuffle_read_bytes": 0, "shuffle_write_bytes": 0, "input_bytes": 0, "output_bytes": 0,
              "executor_cpu_s": 0.0, "executor_run_s": 0.0, "spark_jobs": 0, "spark_stages": 0}
    seen = set()
    for job_id in tracker.getJobIdsForGroup(group):
        info = tracker.getJobInfo(job_id)
        if info is None:
            continue
        totals["spark_jobs"] += 1
        for stage_id in info.stageIds:
            if stage_id in seen:
                continue
            seen.add(stage_id)
            try:
                data = store.lastStageAttempt(stage_id)
            except Exception:  # noqa: BLE001, S112 - a stage evicted from the store (retainedStages) is skipped
                continue
            if data.status().toString() == "SKIPPED":
                continue
            totals["spark_stages"] += 1
            totals["shuffle_read_bytes"] += int(data.shuffleReadBytes())
            totals["shuffle_write_bytes"] += int(data.shuffleWriteBytes())
            totals["input_bytes"] += int(data.inputBytes())
            totals["output_bytes"] += int(data.outputBytes())
            totals["executor_cpu_s"] += data.executorCpuTime() / 1e9
            totals["executor_run_s"] += data.executorRunTime() / 1e3
    totals["executor_cpu_s"] = round(totals["executor_cpu_s"], 2)
    totals["executor_run_s"] = round(totals["executor_run_s"], 2)
    return totals


def fs_read_bytes(spark) -> dict[str, int]:
    """Bytes read so far per FileSystem scheme in this JVM (Hadoop's statistics; empty without a JVM)."""
    try:
        stats = spark.sparkContext._jvm.org.apache.hadoop.fs.FileSystem.getAllStatistics()
        return {str(s.getScheme()): int(s.getBytesRead()) for s in stats}
    except Exception:  # noqa: BLE001 - Spark Connect or no Hadoop classes: the figure is optional
        return {}


def fs_read_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Per scheme, bytes read between two `fs_read_bytes` snapshots (schemes with no reads left out)."""
    grown = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in sorted(grown.items()) if v > 0}


def fs_read_scope(spark) -> str:
    """`all tasks` when the tasks run in this JVM (local master), else `driver only` (`measure` calls it only
    with a SparkContext)."""
    return "all tasks" if spark.sparkContext.master.startswith("local") else "driver only"


@contextmanager
def measure(name: str, spark=None, interval: float = 0.5) -> Iterator[dict]:
    """Measure the body: yields a dict that holds wall_s, cpu_s, peak_rss_mb(+_jvm/_python) and Spark metrics
    once the block ends (also when it raises)."""
    result: dict = {"step": name}
    sampler = _RssSampler(interval) if psutil else None
    if sampler:
        sampler.start()
    group = f"bench-{name}-{time.monotonic_ns()}"
    result["group"] = group  # lets a caller cancel the step's Spark jobs (a baseline's time limit)
    if spark is not None:
        try:
            spark.sparkContext.setJobGroup(group, name)
        except Exception:  # noqa: BLE001 - no SparkContext (Connect)
            spark = None
    fs0 = fs_read_bytes(spark) if spark is not None else {}
    wall0, proc0 = time.perf_counter(), time.process_time()
    try:
        yield result
    finally:
        wall = time.perf_counter() - wall0
        result["wall_s"] = round(wall, 3)
        result["driver_cpu_s"] = round(time.process_time() - proc0, 3)
        if psutil:
            sampler.stop_event.set()
            sampler.join(timeout=2)
            sampler.sample()
            result["cpu_s"] = round(sampler.cpu_seconds(), 3)
            result.update({f"peak_rss_mb{'' if k == 'total' else '_' + k}": round(v, 1) for k, v in sampler.peak.items()})
        if spark is not None:
            result.update(spark_group_metrics(spark, group))
            fs1 = fs_read_bytes(spark)
            if fs1:
                by_scheme = fs_read_delta(fs0, fs1)
                result.update(fs_read_bytes=sum(by_scheme.values()), fs_read_bytes_by_scheme=by_scheme,
                              fs_read_scope=fs_read_scope(spark))
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
