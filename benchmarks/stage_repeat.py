"""Named stages run again on an existing bench lake: what a rerun pays when nothing (or little) changed.

    python benchmarks/stage_repeat.py --root out/bench_s9/n100000 --n 100000 --stages dedup --repeat 2 \
        --out out/stage_repeat.json

`--root` is a bench root (`python -m etl bench` writes `<out>/n<N>` with corpus/, lake/, release/). Each stage
runs `--repeat` times in one Spark session, measured like the bench (wall, CPU, Spark jobs, shuffle). For every
Delta table in the lake the version before and after each run is recorded: a table whose version did not move was
rewritten with the same content (`write_table` compares fingerprints), so a run of new code on a lake written
by old code shows whether the new code gives the same tables. The lake is written in place: copy it first when
it must stay as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from etl.bench.run import add_lake_arguments, open_bench_lake, run_stages  # noqa: E402
from etl.cli import new_run_id, setup_logging  # noqa: E402
from etl.testing.lake_check import table_versions  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_lake_arguments(parser, stages_default="dedup")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", required=True, help="JSON report path")
    args = parser.parse_args(argv)
    setup_logging()
    root = Path(args.root)
    opened = open_bench_lake("stage_repeat", root, args.n, args.conf, "etl-stage-repeat")
    if opened is None:
        return 2
    cfg, spark = opened
    stages = [s for s in args.stages.split(",") if s]
    runs = []
    for i in range(args.repeat):
        before = table_versions(spark, cfg)
        measured = run_stages(spark, cfg, stages, new_run_id(), args.n)
        after = table_versions(spark, cfg)
        moved = sorted(name for name in after if after[name] != before.get(name))
        runs.append({"run": i + 1, "stages": measured, "tables_with_new_version": moved})
        walls = {name: m["wall_s"] for name, m in measured.items()}
        errors = {name: m["error"] for name, m in measured.items() if m.get("error")}
        print(f"run {i + 1}: wall {walls}; tables with a new version: {moved or 'none'}"
              + (f"; failed: {errors}" if errors else ""), flush=True)
    report = {"root": str(root), "n": args.n, "stages": stages, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
