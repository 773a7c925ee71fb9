"""Crash sweep: SIGKILL `python -m etl run` at every stage boundary and in the middle of every stage's writes,
re-run, and compare the lake with an uninterrupted run (content, run ids aside) and its Delta history.

    python benchmarks/crash_sweep.py --conf conf/sample.yaml --out out/crash_sweep [--stages inventory,ingest]
        [--points start,end,during_write,after_write] [--to-stage verify]

Each kill point gets a fresh lake: killed run, then one clean re-run. Writes <out>/crash_sweep.json with one row
per point (killed?, re-run exit code, tables equal?, history problems, seconds) and prints a summary table.
The quick version of this lives in tests/test_crash_restart.py.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etl.testing.crash import POINTS
from etl.testing.lake_check import REPO, content, history_problems, run_cli, table_state


def _args(conf: str, root: Path, raw: Path, to_stage: str) -> list[str]:
    sets = [f"raw_root={raw}", f"lake_root={root / 'lake'}", f"release_dir={root / 'release'}",
            f"database=sweep_{re.sub(r'[^A-Za-z0-9_]', '_', root.name)}", "upload=false"]
    return ["run", "--conf", conf, "--to-stage", to_stage, *[a for s in sets for a in ("--set", s)]]


def _lake_figures(spark, conf: str, root: Path, raw: Path) -> tuple[dict, list[str]]:
    from etl.config import load_config

    cfg = load_config(conf, [f"raw_root={raw}", f"lake_root={root / 'lake'}", f"release_dir={root / 'release'}"])
    return content(table_state(spark, cfg)), history_problems(spark, cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", default="conf/sample.yaml")
    parser.add_argument("--out", default="out/crash_sweep")
    parser.add_argument("--stages", default="", help="comma-separated stages to kill in (default: all up to --to-stage)")
    parser.add_argument("--points", default=",".join(POINTS), help=f"comma-separated, from {', '.join(POINTS)}")
    parser.add_argument("--to-stage", default="verify", help="last stage of each run")
    parser.add_argument("--delay", default="0.5", help="ETL_TEST_KILL_DELAY_S for during_write")
    args = parser.parse_args(argv)

    from etl.cli import available_stages
    from etl.sample_data import write_sample
    from etl.spark import get_spark

    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    raw = out / "raw"
    write_sample(str(raw))
    stages = available_stages()
    stages = stages[: stages.index(args.to_stage) + 1]
    kill_stages = args.stages.split(",") if args.stages else stages
    env = {"ETL_WAREHOUSE_DIR": str(out / "warehouse"), "ETL_TEST_KILL_DELAY_S": args.delay}

    ref_root = out / "reference"
    ref = run_cli(_args(args.conf, ref_root, raw, args.to_stage), env=env, cwd=REPO)
    if ref.returncode not in (0, 4):  # 4: a release gate failed on the sample; the tables are still comparable
        print(ref.stderr[-3000:])
        return 1
    spark = get_spark("crash-sweep", shuffle_partitions=2)
    reference, ref_problems = _lake_figures(spark, args.conf, ref_root, raw)
    rows = []
    for stage in kill_stages:
        for point in args.points.split(","):
            root = out / f"{stage}-{point}"
            start = time.monotonic()
            killed = run_cli(_args(args.conf, root, raw, args.to_stage), cwd=REPO,
                             env={**env, "ETL_TEST_KILL_AT": f"{stage}:{point}"})
            rerun = run_cli(_args(args.conf, root, raw, args.to_stage), env=env, cwd=REPO)
            (out / f"{stage}-{point}.killed.log").write_text(killed.stderr)
            (out / f"{stage}-{point}.rerun.log").write_text(rerun.stderr)
            tables, problems = _lake_figures(spark, args.conf, root, raw)
            rows.append({
                "point": f"{stage}:{point}", "killed": killed.killed,
                "reached": f"killing the run at {stage}:{point}" in killed.stderr,
                "rerun_exit": rerun.returncode, "tables_equal": tables == reference,
                "differing_tables": sorted(t for t in set(tables) | set(reference) if tables.get(t) != reference.get(t)),
                "history_problems": problems, "seconds": round(time.monotonic() - start, 1),
            })
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(root / "lake", ignore_errors=True)
    (out / "crash_sweep.json").write_text(json.dumps({"reference_history_problems": ref_problems, "rows": rows},
                                                     indent=2))
    ok = [r for r in rows if r["rerun_exit"] in (0, 4) and r["tables_equal"] and not r["history_problems"]]
    print(f"\n{len(ok)}/{len(rows)} kill points re-ran to the reference tables "
          f"({sum(r['reached'] for r in rows)} points reached, {sum(r['killed'] for r in rows)} runs killed)")
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
