"""What `etl.io.delta.write_table` spends deciding whether a table changed, per lake table of a bench lake.

    python benchmarks/write_fingerprint.py --lake out/bench_s8/n100000/lake --work /tmp/write_fp

Each named table of `--lake` is copied into `--work` (the source lake is never written), then, with the copied
table's content as input: the input's fingerprint alone; the old table's fingerprint alone (what every write paid
before the fingerprint was recorded in the commit); a changed write (one row fewer) that records its fingerprint;
a changed write of the full input (compared against that record); an unchanged write of the same input (compared
against the record, no new version). Seconds per step, printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from etl.bench.run import bench_config  # noqa: E402
from etl.io import delta  # noqa: E402
from etl.schemas import CONVERSATIONS, DUP_EDGES, PREFERENCE_PAIRS, SPLITS  # noqa: E402
from etl.spark import get_spark  # noqa: E402

TABLES = (CONVERSATIONS, SPLITS, DUP_EDGES, PREFERENCE_PAIRS)


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return round(time.perf_counter() - started, 2), out


def measure(spark, cfg, source: str, name: str) -> dict:
    source_df = spark.read.format("delta").load(source)
    t_input, fp = timed(lambda: delta.fingerprint(source_df))
    t_old, _ = timed(lambda: delta.fingerprint(spark.read.format("delta").load(cfg.table_path(name))))
    t_fewer, _ = timed(lambda: delta.write_table(source_df.limit(fp[0] - 1), cfg, name, "fewer", "bench"))
    t_changed, changed = timed(lambda: delta.write_table(source_df, cfg, name, "full", "bench"))
    t_same, same = timed(lambda: delta.write_table(source_df, cfg, name, "same", "bench"))
    assert changed.changed and not same.changed, (name, changed, same)
    return {"rows": fp[0], "hash_input_s": t_input, "hash_old_table_s": t_old, "changed_write_s": t_changed,
            "unchanged_write_s": t_same, "first_changed_write_s": t_fewer}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True, help="lake folder of a bench run (read only)")
    parser.add_argument("--work", default="/tmp/write_fp", help="scratch folder (wiped)")
    parser.add_argument("--out", default="", help="JSON report path")
    args = parser.parse_args(argv)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    (work / "corpus" / "raw").mkdir(parents=True)
    cfg = bench_config("conf/shared_corpus.yaml", work, 0, ["database=write_fp"])
    spark = get_spark("write-fingerprint")
    report = {}
    for name in TABLES:
        source = str(Path(args.lake) / name)
        shutil.copytree(source, cfg.table_path(name))
        report[name] = measure(spark, cfg, source, name)
        print(name, json.dumps(report[name]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
