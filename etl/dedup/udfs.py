"""mapInPandas functions of the dedup stage: thin wrappers over the numpy building blocks (tested without Spark)."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from etl.config import DedupConf, EmbeddingConf

# One row per (conversation, field) text.
FEATURES_SCHEMA = StructType([
    StructField("conversation_id", StringType(), False),
    StructField("content_hash", StringType(), False),
    StructField("field", StringType(), False),
    StructField("text_hash", StringType(), False),
    StructField("n_chars", IntegerType(), False),
    StructField("informative", BooleanType(), False),
    StructField("signature", ArrayType(LongType(), False), False),
    StructField("bands", ArrayType(LongType(), False), False),
])
EMBED_OUT_SCHEMA = StructType([
    StructField("text_hash", StringType(), False),
    StructField("model", StringType(), False),
    StructField("vector", ArrayType(FloatType(), False), False),
])
HYPERPLANE_SCHEMA = StructType([
    StructField("text_hash", StringType(), False),
    StructField("bands", ArrayType(LongType(), False), False),
])

TRIVIAL_TEXTS = frozenset({
    "hi", "hello", "hey", "hi there", "hello there", "hey there", "thanks", "thank you", "thank you so much",
    "thanks a lot", "ok", "okay", "bye", "goodbye", "good bye", "yes", "no", "sure", "you're welcome",
    "you are welcome", "take care", "have a nice day", "have a good day", "how are you", "i am fine",
})


def is_informative(normalized: str, min_chars: int) -> bool:
    """A text links rows only if it carries information: long enough and not a stock greeting or sign-off."""
    return len(normalized) >= min_chars and normalized not in TRIVIAL_TEXTS


def features_fn(conf: DedupConf, bands: int, rows: int):
    """mapInPandas: (conversation_id, content_hash, field, text) -> text hash, MinHash signature, band hashes."""
    from etl.contract import text_hash
    from etl.dedup.minhash import MinHasher, band_hashes, normalize_for_shingles, shingle_hashes_many

    hasher = MinHasher(conf.num_perm)
    min_chars = conf.min_informative_chars

    def featurize(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            texts = batch["text"].fillna("").tolist()
            normalized = [normalize_for_shingles(t) for t in texts]
            sigs = hasher.signatures(shingle_hashes_many(normalized, conf.shingle_size, normalized=True,
                                                        unit=conf.shingle_unit))
            band = band_hashes(sigs, bands, rows)
            yield pd.DataFrame({
                "conversation_id": batch["conversation_id"],
                "content_hash": batch["content_hash"],
                "field": batch["field"],
                "text_hash": [text_hash(t) for t in texts],
                "n_chars": [len(n) for n in normalized],
                "informative": [is_informative(n, min_chars) for n in normalized],
                "signature": list(sigs.astype(np.int64)),
                "bands": list(band.astype(np.int64)),
            })

    return featurize


def torch_threads_per_task(spark, tasks: int) -> int:
    """CPU threads one embedding task may use: the cores shared by the tasks that run at once, never more.

    Local mode: all tasks share this machine's `defaultParallelism` cores. A cluster: `spark.task.cpus` (each
    task was given that many cores by the scheduler). Without this every Python worker would start one torch
    thread per core of the machine, and two workers on two cores run slower than one.
    """
    master = spark.sparkContext.master or ""
    if master.startswith("local"):
        cores = spark.sparkContext.defaultParallelism
        return max(1, cores // max(1, min(tasks, cores)))
    return max(1, int(spark.conf.get("spark.task.cpus", "1")))


def embedding_tasks(spark, texts, n_texts: int, batch_size: int):
    """(texts laid out for embedding, torch threads per task).

    Range-partitioned by length, longest first, into up to 4 tasks per core: each task pads to similar lengths,
    the long (costly) tasks are scheduled first and the short ones fill the tail, so no core idles while another
    finishes a long partition (one task per core left the Spark path at 0.88x a plain encode).
    """
    cores = max(1, spark.sparkContext.defaultParallelism)
    tasks = max(1, min(4 * cores, -(-n_texts // max(1, batch_size))))
    length = F.length("text")
    laid_out = texts.repartitionByRange(tasks, length.desc(), F.col("text_hash")).sortWithinPartitions(length.desc())
    return laid_out, torch_threads_per_task(spark, min(tasks, cores))


def _torch_threads(threads: int) -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def embed_fn(conf: EmbeddingConf, model_key: str, threads: int = 0):
    """mapInPandas: (text_hash, text) -> L2-normalised vectors; the model is loaded once per Python worker.

    `threads`: torch threads per task (see `torch_threads_per_task`); 0 leaves torch's default.
    """
    from etl.dedup.embedder import embed_texts

    def embed(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        if threads:
            _torch_threads(threads)
        for batch in batches:
            vectors = embed_texts(batch["text"].fillna("").tolist(), conf)
            yield pd.DataFrame({"text_hash": batch["text_hash"], "model": model_key,
                                "vector": list(vectors.astype(np.float32))})

    return embed


BUCKET_PAIRS_SCHEMA = StructType([
    StructField("field", StringType(), False),
    StructField("h1", StringType(), False),
    StructField("h2", StringType(), False),
])


def bucket_cosine_pairs_fn(min_cosine: float):
    """applyInPandas over one embedding-LSH bucket (field, band, key; members with vectors): the member pairs whose
    cosine reaches `min_cosine`, h1 < h2. Comparing inside the bucket keeps the candidate list to pairs that can
    pass verification instead of every co-bucketed pair (in one domain most texts are moderately similar, so a
    bucket holds many unrelated members: 703k raw pairs for 10k conversations)."""
    def pairs(group: pd.DataFrame) -> pd.DataFrame:
        group = group.sort_values("text_hash")
        hashes = group["text_hash"].to_numpy()
        vectors = np.stack(group["vector"].to_numpy()).astype(np.float32)
        i, j = np.triu_indices(len(hashes), k=1)
        keep = np.einsum("ij,ij->i", vectors[i], vectors[j]) >= min_cosine
        return pd.DataFrame({"field": group["field"].iloc[0], "h1": hashes[i[keep]], "h2": hashes[j[keep]]})

    return pairs


def hyperplane_fn(bits: int, tables: int):
    """mapInPandas: (text_hash, vector) -> random-hyperplane band keys (embedding-space LSH)."""
    from etl.dedup.hyperplanes import hyperplane_bands

    def bucket(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if batch.empty:
                continue
            vectors = np.stack(batch["vector"].to_numpy()).astype(np.float32)
            keys = hyperplane_bands(vectors, bits, tables)
            yield pd.DataFrame({"text_hash": batch["text_hash"], "bands": list(keys.astype(np.int64))})

    return bucket
