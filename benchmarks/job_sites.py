"""Where a run's Spark jobs come from: every stage on an existing bench lake, its jobs counted by call site.

    python benchmarks/job_sites.py --root out/bench/n200 --n 200 --out out/job_sites.json

A job's name is Spark's call site ("collect at etl/gates/base.py:75"; "... at CompletableFuture.java" for jobs
started on another thread, mostly by adaptive execution; "... at DatabricksLogging.scala" and "getHistory at
DeltaTableOperations.scala" for Delta's own). Per site: jobs and the sum of their durations (jobs may overlap,
so the sums can exceed the wall time); per stage: wall time, jobs and its busiest sites. The lake is written in
place, like stage_repeat.py (a stage with nothing new rewrites nothing).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from etl.bench.run import add_lake_arguments, chosen_stages, open_bench_lake, run_stages  # noqa: E402
from etl.cli import new_run_id, setup_logging  # noqa: E402


def job_sites(spark, group: str) -> list[tuple[str, float]]:
    """(call site, seconds) of every job of a job group, from the driver's status store."""
    store = spark.sparkContext._jsc.sc().statusStore()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    out = []
    for job_id in spark.sparkContext.statusTracker().getJobIdsForGroup(group):
        job = store.job(job_id)
        start = job.submissionTime().get().getTime() if job.submissionTime().isDefined() else 0
        end = job.completionTime().get().getTime() if job.completionTime().isDefined() else start
        out.append((str(job.name()).replace(repo, ""), (end - start) / 1e3))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_lake_arguments(parser)  # --stages empty: every stage but upload
    parser.add_argument("--top", type=int, default=25, help="sites printed")
    parser.add_argument("--out", required=True, help="JSON report path")
    args = parser.parse_args(argv)
    setup_logging()
    root = Path(args.root)
    opened = open_bench_lake("job_sites", root, args.n, args.conf, "etl-job-sites")
    if opened is None:
        return 2
    cfg, spark = opened
    stages = chosen_stages(args.stages)
    measured = run_stages(spark, cfg, stages, new_run_id(), args.n)
    jobs, seconds, per_stage = collections.Counter(), collections.Counter(), {}
    for name, m in measured.items():
        sites = collections.Counter()
        for site, secs in job_sites(spark, m["group"]):
            jobs[site] += 1
            seconds[site] += secs
            sites[site] += 1
        per_stage[name] = {"wall_s": m["wall_s"], "spark_jobs": sum(sites.values()),
                           "sites": dict(sites.most_common(5))}
    report = {"root": str(root), "n": args.n, "wall_s": round(sum(m["wall_s"] for m in measured.values()), 1),
              "spark_jobs": sum(jobs.values()),
              "sites": [{"site": s, "jobs": n, "job_s": round(seconds[s], 1)} for s, n in jobs.most_common()],
              "stages": per_stage}
    print(f"{report['spark_jobs']} jobs, wall {report['wall_s']} s")
    for row in report["sites"][: args.top]:
        print(f"{row['jobs']:5d} jobs {row['job_s']:7.1f} s  {row['site']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
