"""What a fresh process pays: every stage on an existing bench lake, with the JVM's own counters per stage.

    python benchmarks/cold_start.py --root out/bench/n200 --n 200 --repeat 2 --out out/cold_start.json
    python benchmarks/cold_start.py ... --java-opts "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=512m"
    python benchmarks/cold_start.py ... --spark-conf spark.sql.codegen.wholeStage=false

Run 1 is a cold process (a user's spark-submit), run 2 the same stages again in the warm one. Per stage: wall,
executor run time, Spark jobs, and the deltas of the JVM's JIT compile time, GC time, loaded classes and Spark's
generated-code compilations (count, and time estimated from CodegenMetrics' mean). The lake is written in place
(a stage with nothing new rewrites nothing, see stage_repeat.py); the session is built here, like
etl.spark.local_conf plus the options given, so JVM flags can be compared on the same lake.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from etl.bench.run import add_lake_arguments, append_result, bench_config, chosen_stages, run_stages  # noqa: E402
from etl.cli import new_run_id, setup_logging  # noqa: E402
from etl.io import delta  # noqa: E402
from etl.spark import local_conf  # noqa: E402

COUNTERS = ("jit_ms", "gc_ms", "classes", "codegen_n")


def jvm_counters(spark) -> dict:
    mf = spark._jvm.java.lang.management.ManagementFactory
    compile_time = spark._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    return {"jit_ms": mf.getCompilationMXBean().getTotalCompilationTime(),
            "gc_ms": sum(g.getCollectionTime() for g in mf.getGarbageCollectorMXBeans()),
            "classes": mf.getClassLoadingMXBean().getTotalLoadedClassCount(),
            "codegen_n": compile_time.getCount(),
            "codegen_total_ms": compile_time.getCount() * compile_time.getSnapshot().getMean()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_lake_arguments(parser)  # --stages empty: every stage but upload
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--java-opts", default="", help="added to spark.driver.extraJavaOptions")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True, help="JSON list the result is appended to")
    args = parser.parse_args(argv)
    from pyspark.sql import SparkSession

    setup_logging()
    started = time.perf_counter()
    conf = local_conf("etl-cold-start")
    conf["spark.driver.extraJavaOptions"] += f" {args.java_opts}" if args.java_opts else ""
    conf.update(kv.split("=", 1) for kv in args.spark_conf)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    result = {"root": args.root, "n": args.n, "java_opts": args.java_opts, "spark_conf": args.spark_conf,
              "session_start_s": round(time.perf_counter() - started, 1), "runs": []}
    cfg = bench_config(args.conf, Path(args.root), args.n, [])
    delta.register_all(spark, cfg)
    stages = chosen_stages(args.stages)
    for i in range(args.repeat):
        run, run_id = {}, new_run_id()
        for stage in stages:
            before = jvm_counters(spark)
            measured = run_stages(spark, cfg, [stage], run_id, args.n)[stage]
            after = jvm_counters(spark)
            run[stage] = {"wall_s": measured["wall_s"], "executor_run_s": measured.get("executor_run_s"),
                          "spark_jobs": measured.get("spark_jobs"), "error": measured.get("error"),
                          **{k: after[k] - before[k] for k in COUNTERS},
                          "codegen_ms": round(after["codegen_total_ms"] - before["codegen_total_ms"])}
        totals = {k: round(sum(s[k] or 0 for s in run.values()), 1) for k in ("wall_s", *COUNTERS, "codegen_ms")}
        result["runs"].append({"run": i + 1, "totals": totals, "stages": run})
        print(f"run {i + 1}: {totals}", flush=True)
    append_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
