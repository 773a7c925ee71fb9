"""What a rerun pays to embed a few new texts: in Spark tasks or in the driver (dedup.embeddings.driver_max_texts).

    cp -a out/bench/n20000 /tmp/e20k      # the lake is written in place
    python benchmarks/embed_missing_speed.py --root /tmp/e20k --n 20000 --missing 400 --path tasks --out R.json
    python benchmarks/embed_missing_speed.py --root /tmp/e20k --n 20000 --missing 400 --path driver --out R.json

One path per process, as in a rerun (no Python worker or model loaded before). The first `--missing` cached
vectors (by text hash) are deleted from `lake.embeddings` once; every invocation restores the table to the version
after that delete, then times `etl.stages.dedup.embed_missing` alone (the texts frame is built and counted
before the clock starts) and checks that the vectors it wrote agree with the deleted ones (cosine). Results are
appended to `--out` (a JSON list).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyspark.sql import functions as F  # noqa: E402

from etl.bench.run import append_result, bench_config  # noqa: E402
from etl.dedup.features import cached_features  # noqa: E402
from etl.io import delta  # noqa: E402
from etl.schemas import CONVERSATIONS, EMBEDDINGS  # noqa: E402
from etl.spark import get_spark  # noqa: E402
from etl.stages import dedup  # noqa: E402

MARK = "embed_missing_speed"  # userMetadata of the delete commit: later invocations restore to it


def delete_commit(spark, path: str) -> int | None:
    rows = [h for h in delta.history(spark, path) if (h.get("userMetadata") or "") == MARK]
    return rows[-1]["version"] if rows else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="a finished bench root (n<N> folder), written in place")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--missing", type=int, default=400, help="cached vectors to delete (once per root)")
    ap.add_argument("--path", choices=("tasks", "driver"), required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    limit = 0 if args.path == "tasks" else max(args.missing, 1)
    cfg = bench_config("conf/shared_corpus.yaml", Path(args.root), args.n,
                       [f"dedup.embeddings.driver_max_texts={limit}"])
    spark = get_spark("embed-missing-speed")
    path = cfg.table_path(EMBEDDINGS)
    version = delete_commit(spark, path)
    if version is None:
        kept = spark.read.format("delta").load(path).orderBy("text_hash").limit(args.missing).toPandas()
        kept.to_parquet(os.path.join(args.root, "embed_missing_deleted.parquet"))
        spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", MARK)
        hashes = ",".join(f"'{h}'" for h in kept["text_hash"])
        spark.sql(f"DELETE FROM delta.`{path}` WHERE text_hash IN ({hashes})")
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
        version = delete_commit(spark, path)
    else:
        spark.sql(f"RESTORE TABLE delta.`{path}` TO VERSION AS OF {version}")
    import pandas as pd

    deleted = pd.read_parquet(os.path.join(args.root, "embed_missing_deleted.parquet"))
    conf = cfg.dedup
    bands, rows = dedup.band_params(conf)
    conv = delta.read_table(spark, cfg, CONVERSATIONS).select("conversation_id", "content_hash", "messages")
    features, _ = cached_features(spark, cfg, dedup.with_texts(conv), bands, rows, "bench")
    features = features.persist()
    texts = dedup.informative_texts(conv, features).persist()
    n_texts = texts.count()
    started = time.perf_counter()
    _, counts = dedup.embed_missing(spark, cfg, texts, "bench")
    seconds = round(time.perf_counter() - started, 2)
    new = (spark.read.format("delta").load(path).join(spark.createDataFrame(deleted[["text_hash"]]), "text_hash")
           .select("text_hash", F.col("vector").alias("new")).toPandas())
    import numpy as np

    both = new.merge(deleted[["text_hash", "vector"]], on="text_hash")
    cos = [float(np.dot(a, b)) for a, b in zip(both["new"], both["vector"])]
    result = {"path": args.path, "n": args.n, "texts": n_texts, "seconds": seconds, **counts,
              "re_embedded": len(both), "cosine_to_deleted_min": round(min(cos), 6) if cos else None}
    append_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
