"""mapInPandas functions of the dedup stage: thin wrappers over the numpy building blocks (tested without Spark)."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    FloatType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from etl.config import EmbeddingConf
from etl.leakage import is_trivial

EMBED_OUT_SCHEMA = StructType([
    StructField("text_hash", StringType(), False),
    StructField("model", StringType(), False),
    StructField("vector", ArrayType(FloatType(), False), False),
])
HYPERPLANE_SCHEMA = StructType([
    StructField("text_hash", StringType(), False),
    StructField("bands", ArrayType(LongType(), False), False),
    StructField("vector", ArrayType(FloatType(), False), False),
])

def is_informative(normalized: str, min_chars: int) -> bool:
    """A text links rows only if it carries information: the splits stage's rule (etl.leakage.is_trivial), so
    dedup's related edges, the split groups built from them and the leakage checks agree on what is trivial."""
    return not is_trivial(normalized, min_chars)


def _conf_number(spark, key: str) -> float | None:
    """A numeric session setting, or None when it is unset, not a number (Databricks' "auto") or unreadable."""
    try:
        return float(spark.conf.get(key, None) or "")
    except Exception:  # noqa: BLE001 - unset, not a number, or a conf the client cannot read
        return None


def torch_threads_per_task(spark, tasks: int) -> int:
    """CPU threads one embedding task may use: the cores shared by the tasks that run at once, never more.

    Local mode: all tasks share this machine's `defaultParallelism` cores. A cluster: `spark.task.cpus` (each
    task was given that many cores by the scheduler). Without this every Python worker would start one torch
    thread per core of the machine, and two workers on two cores run slower than one.
    """
    if runs_locally(spark):
        cores = parallelism(spark)
        return max(1, cores // max(1, min(tasks, cores)))
    return max(1, int(_conf_number(spark, "spark.task.cpus") or 1))


CONNECT_PARALLELISM = 200  # Spark's default shuffle partitions: the guess when a Connect session names no number


def parallelism(spark) -> int:
    """Tasks the cluster runs at once: `defaultParallelism`, or under Spark Connect (no SparkContext in this
    process) `spark.default.parallelism`, else `spark.sql.shuffle.partitions`, else 200 (the client cannot see
    the cluster's cores; too few tasks would leave executors idle, extra ones only queue)."""
    try:
        return max(1, spark.sparkContext.defaultParallelism)
    except Exception:  # noqa: BLE001 - Spark Connect raises here
        pass
    for key in ("spark.default.parallelism", "spark.sql.shuffle.partitions"):
        if (value := _conf_number(spark, key)) is not None and value >= 1:
            return int(value)
    return CONNECT_PARALLELISM


def runs_locally(spark) -> bool:
    """True when the driver and the executors share one machine (master `local[...]`); False on a cluster and under
    Spark Connect (no SparkContext in this process), where the executors hold the cores, GPUs and model files."""
    try:
        return (spark.sparkContext.master or "").startswith("local")
    except Exception:  # noqa: BLE001 - Spark Connect raises here: treat it as a cluster
        return False


def _schedules_gpus(spark) -> bool:
    """True when Spark gives executors GPUs (spark.executor.resource.gpu.amount > 0)."""
    return (_conf_number(spark, "spark.executor.resource.gpu.amount") or 0) > 0


def executor_device(spark, device: str) -> str:
    """The device the embedding tasks will run on, as far as the driver can tell (it sizes the tasks by it).

    Local master: the driver's machine is the executors' machine, so `pick_device` answers here (and refuses
    cuda without a GPU before any task starts). On a cluster the driver often has no GPU while the executors do:
    'cuda' is taken at its word (each task checks its own GPU) and 'auto' means cuda when Spark schedules GPUs to
    executors. Asking torch on a GPU-less driver refused a valid cuda setting there.
    """
    from etl.dedup.embedder import DEVICES, pick_device

    if runs_locally(spark) or device not in DEVICES:  # an unknown name: pick_device's one-line ConfigError
        return pick_device(device)
    if device == "auto":
        return "cuda" if _schedules_gpus(spark) else "cpu"
    return device


def task_batch_size(spark, conf: EmbeddingConf) -> int:
    """The encode batch of one embedding task (`pick_batch_size` on `executor_device`): sizes the tasks."""
    from etl.dedup.embedder import pick_batch_size

    return pick_batch_size(conf.batch_size, executor_device(spark, conf.device))


def embedding_tasks(spark, texts, n_texts: int, batch_size: int):
    """(texts laid out for embedding, torch threads per task).

    Range-partitioned by length, longest first, into up to 4 tasks per core: each task pads to similar lengths,
    the long (costly) tasks are scheduled first and the short ones fill the tail, so no core idles while another
    finishes a long partition (one task per core left the Spark path at 0.88x a plain encode).
    """
    cores = parallelism(spark)
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
    from etl.dedup.embedder import embed_texts, task_gpu

    def embed(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        if threads:
            _torch_threads(threads)
        gpu = task_gpu()  # the GPU this task was given on a cluster with GPU scheduling, else None
        for batch in batches:
            vectors = embed_texts(batch["text"].fillna("").tolist(), conf, gpu)
            yield pd.DataFrame({"text_hash": batch["text_hash"], "model": model_key,
                                "vector": list(vectors.astype(np.float32))})

    return embed


BUCKET_PAIRS_SCHEMA = StructType([
    StructField("field", StringType(), False),
    StructField("h1", StringType(), False),
    StructField("h2", StringType(), False),
    StructField("jaccard", DoubleType(), False),
    StructField("cosine", DoubleType(), False),
])


_SCREEN_SLACK = 1e-9  # far above a float64 dot product's rounding, far below any meaningful cosine


def bucket_cosine_pairs_fn(min_cosine: float):
    """applyInPandas over a hash partition of embedding-LSH buckets (rows: field, band, key, text_hash, vector,
    signature): inside each bucket the member pairs whose cosine reaches `min_cosine`, h1 < h2, already scored
    (MinHash-estimated Jaccard and cosine), so they need no join back to vectors and signatures. Comparing inside
    the bucket keeps the candidate list to pairs that can pass verification instead of every co-bucketed pair (in
    one domain most texts are moderately similar: 703k raw pairs for 10k conversations). Many buckets share one
    call: a Spark group per bucket cost about 0.7 ms each (37 s at 10k). Scoring here instead of joining each
    candidate to two vectors and two signatures saves about 5 KB of shuffle per candidate (9.6 GB at 100k)."""
    def pairs(part: pd.DataFrame) -> pd.DataFrame:
        part = part.sort_values(["field", "band", "key", "text_hash"], kind="stable").reset_index(drop=True)
        vectors = np.stack(part["vector"].to_numpy()).astype(np.float64)
        signatures = np.stack(part["signature"].to_numpy())
        hashes = part["text_hash"].to_numpy()
        fields = part["field"].to_numpy()
        bucket = (part[["field", "band", "key"]] != part[["field", "band", "key"]].shift()).any(axis=1).to_numpy()
        starts = np.flatnonzero(bucket)
        ends = np.append(starts[1:], len(part))
        out: dict[str, list] = {"field": [], "h1": [], "h2": [], "jaccard": [], "cosine": []}
        for lo, hi in zip(starts, ends):
            if hi - lo < 2:
                continue
            block = vectors[lo:hi]
            # screen with one BLAS product per bucket (gathering both rows of every pair was 50x slower), then score
            # the survivors pair by pair: a Gram entry's last bits depend on the bucket's shape, and a pair found in
            # two buckets must carry one cosine whichever copy survives (reruns write identical edges)
            gram = block @ block.T
            i, j = np.nonzero(np.triu(gram >= min_cosine - _SCREEN_SLACK, k=1))  # row-major, as np.triu_indices
            if len(i):
                i, j = i + lo, j + lo
                cosine = np.einsum("ij,ij->i", vectors[i], vectors[j])
                keep = cosine >= min_cosine
                i, j, cosine = i[keep], j[keep], cosine[keep]
            if len(i):
                out["h1"].append(hashes[i])
                out["h2"].append(hashes[j])
                out["cosine"].append(cosine)
                out["jaccard"].append((signatures[i] == signatures[j]).mean(axis=1))
                out["field"].append(np.full(len(i), fields[lo], dtype=object))
        if not out["h1"]:
            return pd.DataFrame({f.name: pd.Series(dtype=object if f.name in ("field", "h1", "h2") else float)
                                 for f in BUCKET_PAIRS_SCHEMA.fields})
        return pd.DataFrame({k: np.concatenate(v) for k, v in out.items()})

    return pairs


def hyperplane_fn(bits: int, tables: int):
    """mapInPandas: (text_hash, vector) -> (text_hash, random-hyperplane band keys, vector): the keys travel with
    the vector, so the candidate steps read one frame instead of joining keys back to vectors."""
    from etl.dedup.hyperplanes import hyperplane_bands

    def bucket(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if batch.empty:
                continue
            vectors = np.stack(batch["vector"].to_numpy()).astype(np.float32)
            keys = hyperplane_bands(vectors, bits, tables)
            yield pd.DataFrame({"text_hash": batch["text_hash"], "bands": list(keys.astype(np.int64)),
                                "vector": batch["vector"]})

    return bucket
