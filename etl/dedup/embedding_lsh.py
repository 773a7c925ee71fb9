"""Embedding-LSH candidate pairs, compared in full or, on a rerun, only where the text set changed.

The candidates of a text set are the pairs sharing a random-hyperplane bucket of 2..`max_bucket_size` members
(per field) whose cosine reaches `candidate_min_cosine`, scored there (cosine, MinHash Jaccard). They depend on the
text set and the settings only, so `lake.embedding_lsh` keeps, per (field, text) of the last run, its bucket keys
and its candidate pairs (each under its smaller hash). A rerun gets the same pairs as a full comparison by:
- keeping a stored pair when both texts remain and still share a bucket that is not a template now;
- finding the pairs of each new text in one pass over the vectors against the new texts' bucket keys (broadcast),
  instead of shipping every text's vector to each of its buckets (5 GB of shuffle at 100k conversations);
- comparing whole again any bucket that fell back to `max_bucket_size` members or fewer (texts removed).
No state under these settings, or more new texts than `FULL_ABOVE` of the set or `MAX_NEW`: the full comparison.
"""

from __future__ import annotations

import functools
import sys
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from etl.code_digest import source_digest
from etl.config import Config, DedupConf
from etl.dedup import udfs
from etl.dedup.features import signature_jaccard
from etl.io import delta
from etl.schemas import EMBEDDING_LSH

BUCKET = ["field", "band", "key"]
PAIR_COLUMNS = ["field", "h1", "h2", "jaccard", "cosine"]
FULL_ABOVE = 0.25  # more new texts than this share of the set: the full comparison is cheaper than the broadcast
MAX_NEW = 50_000  # nor more new texts than this: their keys and vectors travel to every task of the scan
_CHUNK = 8192  # pairs scored per numpy call in the new-text scan (bounds the gathered rows' memory)
NEW_PAIRS_SCHEMA = StructType([
    StructField("field", StringType(), False),
    StructField("h1", StringType(), False),
    StructField("h2", StringType(), False),
    StructField("cosine", DoubleType(), False),
])


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    from etl.dedup import hyperplanes

    return source_digest(hyperplanes, udfs.hyperplane_fn, udfs.bucket_cosine_pairs_fn, sys.modules[__name__],
                         length=12)


def params_key(conf: DedupConf, model: str, feature_params: str) -> str:
    """Every input of a candidate besides the texts: stored state is reused only under the same key."""
    return (f"hp{conf.hyperplane_bits}x{conf.hyperplane_tables}|max{conf.max_bucket_size}"
            f"|min{conf.candidate_min_cosine}|{model}|{feature_params}|code{_code_digest()}")


def bucket_rows(keys: DataFrame) -> DataFrame:
    """(field, text_hash, bands) -> one row per bucket membership (field, band, key, text_hash)."""
    return keys.select("field", "text_hash", F.posexplode("bands").alias("band", "key"))


def bucket_sizes(keys: DataFrame) -> DataFrame:
    return bucket_rows(keys).groupBy(*BUCKET).agg(F.count(F.lit(1)).alias("size"))


def full_candidates(keys: DataFrame, vec_sigs: DataFrame, conf: DedupConf, only: DataFrame | None = None
                    ) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(scored pairs, template buckets, compared bucket sizes): every bucket of 2..max_bucket_size members (or only
    those in `only`) compared inside itself, so vectors and signatures travel only for texts sharing a bucket."""
    rows = bucket_rows(keys)
    sizes = bucket_sizes(keys).where(F.col("size") > 1)
    too_big = sizes.where(F.col("size") > conf.max_bucket_size)
    compared = sizes.where(F.col("size") <= conf.max_bucket_size)
    if only is not None:
        compared = compared.join(only, BUCKET, how="left_semi")
    shared = rows.join(compared.drop("size"), BUCKET, how="left_semi")
    parts = int(keys.sparkSession.conf.get("spark.sql.shuffle.partitions", "8"))
    pairs = (shared.join(vec_sigs, "text_hash", how="inner")
             .groupBy(F.pmod(F.xxhash64(*BUCKET), F.lit(parts)).alias("_part"))
             .applyInPandas(udfs.bucket_cosine_pairs_fn(conf.candidate_min_cosine), udfs.BUCKET_PAIRS_SCHEMA)
             .dropDuplicates(["field", "h1", "h2"]))
    return pairs, too_big, compared


def new_pairs_fn(new_keys: pd.DataFrame, new_vectors: pd.DataFrame, min_cosine: float):
    """mapInPandas over (text_hash, bands, vector): each text's pairs with the new texts sharing one of its buckets
    (`new_keys`: field, band, key, text_hash of the new texts' open buckets; `new_vectors`: text_hash, vector),
    cosine >= min_cosine, h1 < h2. The cosine is computed pair by pair as in `udfs.bucket_cosine_pairs_fn`, so a
    pair gets the same value whichever way it is found. The field is the new text's: the caller keeps a pair only
    where the other text is in that field too."""
    new_hashes = new_vectors["text_hash"].to_numpy()
    index = {h: i for i, h in enumerate(new_hashes)}
    matrix = (np.stack(new_vectors["vector"].to_numpy()).astype(np.float32) if len(new_vectors)
              else np.empty((0, 0), dtype=np.float32))  # float32 as stored; gathered rows become float64
    lookup = new_keys.assign(new=new_keys["text_hash"].map(index)).drop(columns="text_hash")

    def scan(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if batch.empty or lookup.empty:
                continue
            bands = np.stack(batch["bands"].to_numpy())
            n, tables = bands.shape
            rows = pd.DataFrame({"row": np.repeat(np.arange(n), tables), "band": np.tile(np.arange(tables), n),
                                 "key": bands.ravel()})
            hits = rows.merge(lookup, on=["band", "key"]).drop_duplicates(["row", "field", "new"])
            hashes = batch["text_hash"].to_numpy()
            hits = hits[hashes[hits["row"].to_numpy()] != new_hashes[hits["new"].to_numpy()]]
            if hits.empty:
                continue
            vectors = np.stack(batch["vector"].to_numpy()).astype(np.float64)
            row, new = hits["row"].to_numpy(), hits["new"].to_numpy()
            cosine = np.concatenate([
                np.einsum("ij,ij->i", vectors[row[lo:lo + _CHUNK]], matrix[new[lo:lo + _CHUNK]].astype(np.float64))
                for lo in range(0, len(row), _CHUNK)])
            keep = cosine >= min_cosine
            a, b = hashes[row[keep]], new_hashes[new[keep]]
            first = a < b
            yield pd.DataFrame({"field": hits["field"].to_numpy()[keep], "h1": np.where(first, a, b),
                                "h2": np.where(first, b, a), "cosine": cosine[keep]})

    return scan


def _jaccard(sigs: DataFrame, pairs: DataFrame, num_perm: int) -> DataFrame:
    """Scored pairs (field, h1, h2, cosine) + the MinHash Jaccard of their signatures."""
    s1 = sigs.select(F.col("text_hash").alias("h1"), F.col("signature").alias("s1"))
    s2 = sigs.select(F.col("text_hash").alias("h2"), F.col("signature").alias("s2"))
    return (pairs.join(s1, "h1").join(s2, "h2")
            .select("field", "h1", "h2", signature_jaccard(F.col("s1"), F.col("s2"), num_perm).alias("jaccard"),
                    "cosine"))


def incremental_candidates(state: DataFrame, keys: DataFrame, new: DataFrame, vec_bands: DataFrame,
                           sigs: DataFrame, vec_sigs: DataFrame, conf: DedupConf
                           ) -> tuple[DataFrame, DataFrame, DataFrame]:
    """The full comparison's result for `keys` from the last run's `state` (see the module docstring)."""
    sizes = bucket_sizes(keys)
    too_big = sizes.where(F.col("size") > conf.max_bucket_size)
    open_buckets = sizes.where((F.col("size") > 1) & (F.col("size") <= conf.max_bucket_size))
    previous_templates = bucket_sizes(state).where(F.col("size") > conf.max_bucket_size).select(*BUCKET)
    reopened = open_buckets.select(*BUCKET).join(previous_templates, BUCKET, how="left_semi")

    stored = (state.select("field", F.col("text_hash").alias("h1"), F.explode("pairs").alias("p"))
              .select("field", "h1", "p.h2", "p.jaccard", "p.cosine")  # inner joins: both texts still here
              .join(keys.select("field", F.col("text_hash").alias("h1"), F.col("bands").alias("b1")), ["field", "h1"])
              .join(keys.select("field", F.col("text_hash").alias("h2"), F.col("bands").alias("b2")), ["field", "h2"]))
    shared = F.filter(F.sequence(F.lit(0), F.size("b1") - 1), lambda i: F.col("b1")[i] == F.col("b2")[i])
    kept = (stored.select(*PAIR_COLUMNS, "b1", F.explode(shared).alias("band"))
            .withColumn("key", F.col("b1")[F.col("band")])
            .join(too_big.select(*BUCKET), BUCKET, how="left_anti")
            .select(*PAIR_COLUMNS).dropDuplicates(["field", "h1", "h2"]))

    new_keys = bucket_rows(new).join(open_buckets.select(*BUCKET), BUCKET, how="left_semi").toPandas()
    new_vectors = (vec_bands.join(new.select("text_hash").distinct(), "text_hash", how="left_semi")
                   .select("text_hash", "vector").toPandas())
    found = (vec_bands.mapInPandas(new_pairs_fn(new_keys, new_vectors, conf.candidate_min_cosine), NEW_PAIRS_SCHEMA)
             .join(keys.select("field", F.col("text_hash").alias("h1")), ["field", "h1"], how="left_semi")
             .join(keys.select("field", F.col("text_hash").alias("h2")), ["field", "h2"], how="left_semi")
             .dropDuplicates(["field", "h1", "h2"]))
    pairs = kept.unionByName(_jaccard(sigs, found, conf.num_perm))
    if reopened.limit(1).count():
        whole, _, _ = full_candidates(keys, vec_sigs, conf, only=reopened)
        pairs = pairs.unionByName(whole.select(*PAIR_COLUMNS))
    compared = (bucket_rows(new).join(open_buckets, BUCKET).groupBy(*BUCKET)
                .agg(F.count(F.lit(1)).alias("new"), F.first("size").alias("size")))
    return pairs.dropDuplicates(["field", "h1", "h2"]), too_big, compared


def candidates(spark: SparkSession, cfg: Config, text_fields: DataFrame, vec_bands: DataFrame, sigs: DataFrame,
               params: str, run_id: str) -> tuple[DataFrame, dict]:
    """Scored embedding-LSH pairs (field, h1, h2, jaccard, cosine) for the texts of `text_fields` (field,
    text_hash), from `vec_bands` (text_hash, bands, vector) and `sigs` (text_hash, signature); stores the state
    for the next run. Returns (pairs, counts)."""
    conf = cfg.dedup
    keys = text_fields.join(vec_bands.select("text_hash", "bands"), "text_hash").persist()
    # pinned to the version read now: frames derived from it may be recomputed after this run replaces it
    version = delta.current_version(spark, cfg.table_path(EMBEDDING_LSH))
    state = delta.read_table(spark, cfg, EMBEDDING_LSH, version).where(F.col("params") == params).drop("params")
    new = keys.join(state.select("field", "text_hash"), ["field", "text_hash"], how="left_anti").persist()
    n_keys, n_new = keys.count(), new.count()
    vec_sigs = vec_bands.select("text_hash", "vector").join(sigs, "text_hash")
    incremental = n_new < n_keys and n_new <= min(FULL_ABOVE * n_keys, MAX_NEW)  # no state: every text is new
    if incremental:
        pairs, too_big, compared = incremental_candidates(state, keys, new, vec_bands, sigs, vec_sigs, conf)
        # each new text against its buckets' members (a new-new pair counts twice; reopened buckets not counted)
        compared_pairs = F.sum(F.col("new") * (F.col("size") - 1))
    else:
        pairs, too_big, compared = full_candidates(keys, vec_sigs, conf)
        compared_pairs = F.sum(F.col("size") * (F.col("size") - 1) / 2)
    # everything that reads the old state is computed before the state is replaced
    pairs = pairs.select(*PAIR_COLUMNS).persist()
    counts = {"embedding_lsh": "incremental" if incremental else "full", "embedding_lsh_new_texts": n_new,
              "candidates_embedding": pairs.count(),
              "embedding_pairs_compared": int(compared.select(compared_pairs).first()[0] or 0),
              "template_buckets_embedding": too_big.count()}
    by_text = pairs.groupBy("field", "h1").agg(F.array_sort(F.collect_list(F.struct("h2", "jaccard", "cosine")))
                                                .alias("pairs"))
    rows = (keys.join(by_text.withColumnRenamed("h1", "text_hash"), ["field", "text_hash"], how="left")
            .select(F.lit(params).alias("params"), "field", "text_hash", "bands",
                    F.coalesce("pairs", F.array().cast(by_text.schema["pairs"].dataType)).alias("pairs")))
    delta.write_table(rows, cfg, EMBEDDING_LSH, run_id, "dedup")
    keys.unpersist()
    new.unpersist()
    return pairs, counts
