"""What a rerun's ingest pays when only new raw objects arrived (the bench's +1 % rerun), timed on a finished lake.

    cp -a out/bench/n20000 /tmp/i20k      # the lake is written in place
    python benchmarks/ingest_rerun_speed.py --root /tmp/i20k --n 20000 --out R.json

The root must be a finished bench root whose last run was the incremental rerun (`python -m etl bench`, default
`--incremental 0.01`): its inventory lists the new objects. The first invocation records, per ingest table
(conversations, quarantine, pii_findings, ingest_objects), the version before that rerun's ingest wrote it; every
invocation restores those versions (RESTORE), so each one replays the same rerun's ingest, one per process. The
ledger's `ingest_key` is set to this code's key: the benchmark compares what happens around the parsing (the same
objects are parsed either way), so it is only valid between versions of the code that parse objects alike. The raw
slice's content fingerprint (run ids aside) is recorded, to check that versions wrote the same rows. Results are
appended to `--out` (a JSON list).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyspark.sql import functions as F  # noqa: E402

from etl.bench.run import append_result, bench_config  # noqa: E402
from etl.io import delta  # noqa: E402
from etl.schemas import CONVERSATIONS, INGEST_OBJECTS, PII_FINDINGS, QUARANTINE  # noqa: E402
from etl.spark import get_spark  # noqa: E402
from etl.stages import ingest, ingest_ledger  # noqa: E402

TABLES = (CONVERSATIONS, QUARANTINE, PII_FINDINGS, INGEST_OBJECTS)
STATE = "ingest_rerun_speed.json"  # in the root: the versions to restore


def _meta(row: dict) -> dict:
    try:
        meta = json.loads(row.get("userMetadata") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def versions_before_last_ingest(spark, cfg) -> dict[str, int]:
    """Per table, the version before the last ingest run's first commit to it (its current one if it has none)."""
    ledger = delta.history(spark, cfg.table_path(INGEST_OBJECTS))
    run_id = next(_meta(h).get("run_id") for h in reversed(ledger) if _meta(h).get("stage") == "ingest")
    out = {}
    for name in TABLES:
        rows = delta.history(spark, cfg.table_path(name))
        mine = [h["version"] for h in rows if _meta(h).get("run_id") == run_id and _meta(h).get("stage") == "ingest"]
        out[name] = min(mine) - 1 if mine else rows[-1]["version"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="a finished bench root (n<N> folder), written in place")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    cfg = bench_config("conf/shared_corpus.yaml", Path(args.root), args.n, [])
    spark = get_spark("ingest-rerun-speed")
    state_path = os.path.join(args.root, STATE)
    if not os.path.exists(state_path):
        with open(state_path, "w") as fh:
            json.dump(versions_before_last_ingest(spark, cfg), fh)
    with open(state_path) as fh:
        before = json.load(fh)
    for name, version in before.items():
        spark.sql(f"RESTORE TABLE delta.`{cfg.table_path(name)}` TO VERSION AS OF {version}")
    key = ingest_ledger.ingest_key(cfg)
    spark.sql(f"UPDATE delta.`{cfg.table_path(INGEST_OBJECTS)}` SET ingest_key = '{key}' WHERE ingest_key != '{key}'")
    started = time.perf_counter()
    counts = ingest.run(spark, cfg, "bench-ingest")
    seconds = round(time.perf_counter() - started, 2)
    raw = [f.name for f in cfg.raw_families()]
    slice_fp = delta.fingerprint(delta.read_table(spark, cfg, CONVERSATIONS).where(F.col("family").isin(raw)))
    result = {"n": args.n, "seconds": seconds, "objects_parsed": counts["objects_parsed"],
              "objects_reused": counts["objects_reused"], "conversations": counts["conversations"],
              "conversations_written": counts.get("conversations_written", "slice"),
              "raw_slice_fingerprint": list(slice_fp), "restored_versions": before}
    append_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
