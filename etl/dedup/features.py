"""Per-text dedup features (text hash, MinHash signature, LSH band keys), cached in `lake.text_features`.

A text's features depend only on the text and the hashing settings, so they are computed once per distinct raw
text and kept, like the embeddings: a rerun with 1 % new data hashes 1 % of the texts. Rows are keyed by
`raw_key` (SHA-256 of the raw text, computed in the JVM: no Python to look a text up) and `params`, which names
every setting and the source of the code that shapes a feature (normalisation, shingling, MinHash, contract), so
a change to any of them misses the cache instead of reusing stale signatures.
"""

from __future__ import annotations

import functools
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from etl.code_digest import source_digest
from etl.config import Config, DedupConf
from etl.io import delta
from etl.schemas import TEXT_FEATURES, TEXT_FEATURES_SCHEMA


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """Digest of the modules whose code decides a feature value (see the module docstring)."""
    from etl import contract, leakage
    from etl.dedup import minhash, udfs

    return source_digest(contract, minhash, udfs.is_informative, leakage, length=12)


def params_key(conf: DedupConf, bands: int, rows: int) -> str:
    """Every input of a feature besides the text: a cached row is reused only under the same key."""
    return (f"{conf.shingle_unit}{conf.shingle_size}|perm{conf.num_perm}|b{bands}x{rows}"
            f"|min{conf.min_informative_chars}|code{_code_digest()}")


def text_features_fn(conf: DedupConf, bands: int, rows: int, params: str):
    """mapInPandas: (raw_key, text) -> TEXT_FEATURES_SCHEMA rows (vectorised MinHash per Arrow batch)."""
    from etl.contract import text_hash
    from etl.dedup.minhash import (
        MinHasher,
        band_hashes,
        normalize_for_shingles,
        shingle_hashes_many,
    )
    from etl.dedup.udfs import is_informative

    hasher = MinHasher(conf.num_perm)

    def featurize(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            texts = batch["text"].fillna("").tolist()
            normalized = [normalize_for_shingles(t) for t in texts]
            sigs = hasher.signatures(shingle_hashes_many(normalized, conf.shingle_size, normalized=True,
                                                        unit=conf.shingle_unit))
            yield pd.DataFrame({
                "raw_key": batch["raw_key"], "params": params,
                "text_hash": [text_hash(t) for t in texts],
                "n_chars": np.fromiter((len(n) for n in normalized), dtype=np.int32, count=len(normalized)),
                "informative": [is_informative(n, conf.min_informative_chars) for n in normalized],
                "signature": list(sigs.astype(np.int64)),
                "bands": list(band_hashes(sigs, bands, rows).astype(np.int64)),
            })

    return featurize


def signature_jaccard(a: Column, b: Column, num_perm: int) -> Column:
    """MinHash-estimated Jaccard of two signature columns: the share of equal positions."""
    return F.size(F.filter(F.zip_with(a, b, lambda x, y: x == y), lambda x: x)) / F.lit(float(num_perm))


def raw_key(text_col: str = "text"):
    return F.sha2(F.coalesce(F.col(text_col), F.lit("")), 256)


def cached_features(spark: SparkSession, cfg: Config, texts: DataFrame, bands: int, rows: int, run_id: str
                    ) -> tuple[DataFrame, dict]:
    """texts (conversation_id, content_hash, field, text) -> FEATURES_SCHEMA rows, hashing only uncached texts.

    Returns (features, {"texts_hashed": n computed now, "texts_hash_cached": n reused}).
    """
    conf = cfg.dedup
    params = params_key(conf, bands, rows)
    keyed = texts.withColumn("raw_key", raw_key())
    distinct = keyed.select("raw_key", "text").dropDuplicates(["raw_key"])
    cached = delta.read_table(spark, cfg, TEXT_FEATURES).where(F.col("params") == params).select("raw_key")
    missing = distinct.join(cached, "raw_key", how="left_anti")
    new = missing.mapInPandas(text_features_fn(conf, bands, rows, params), TEXT_FEATURES_SCHEMA)
    n_new = delta.add_missing(new, cfg, TEXT_FEATURES, ("raw_key", "params"), run_id, "dedup")
    table = delta.read_table(spark, cfg, TEXT_FEATURES).where(F.col("params") == params).drop("params")
    features = keyed.select("conversation_id", "content_hash", "field", "raw_key").join(table, "raw_key", "inner")
    n_distinct = distinct.count()
    return (features.select("conversation_id", "content_hash", "field", "text_hash", "n_chars", "informative",
                            "signature", "bands"),
            {"texts_hashed": n_new, "texts_hash_cached": n_distinct - n_new})
