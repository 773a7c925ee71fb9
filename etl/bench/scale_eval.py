"""Measurements of the scale benchmark that need the lake: dedup quality on the generator's ground truth, the two
baselines on the same corpus, and Spark-path vs plain sentence-transformers embedding throughput."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from etl.bench import baselines
from etl.bench.measure import measure
from etl.config import Config
from etl.io import delta

log = logging.getLogger(__name__)


def truth_frame(spark: SparkSession, cfg: Config, truth: list[dict]) -> pd.DataFrame:
    """Ingested conversations of the generated raw tree joined with their truth rows (quarantined rows drop out)."""
    conv = (delta.read_table(spark, cfg, "conversations").where(F.col("parent_id").isNull())
            .select("conversation_id", F.col("source_uri").alias("source_key"),
                    F.col("source_locator").alias("locator"), "content_hash").toPandas())
    t = pd.DataFrame(truth)
    return conv.merge(t, on=["source_key", "locator"], how="inner")


def _recall_by(frame: pd.DataFrame, label: pd.Series, kinds: pd.Series) -> dict:
    """Share of duplicate rows whose label equals their source's label, per kind."""
    by_index = dict(zip(frame["index"], label))
    out = {}
    rows = frame[frame["dup_of"].notna() & frame["dup_of"].isin(list(by_index))]  # source not quarantined
    for kind, group in rows.groupby(kinds.loc[rows.index]):
        hits = [by_index.get(int(d)) is not None and by_index.get(int(d)) == by_index.get(i)
                for i, d in zip(group["index"], group["dup_of"])]
        out[str(kind)] = {"rows": len(hits), "recall": round(float(np.mean(hits)), 4) if hits else None}
    return out


def quality(frame: pd.DataFrame, labels: pd.Series) -> dict:
    """Pair-counting P/R/F1 of a clustering (labels aligned with frame) against the truth roots, and recall of
    each duplicate row to its source by kind (exact or the near-duplicate perturbation)."""
    kinds = frame["perturbation"].fillna(frame["kind"])
    return {**baselines.pair_counting(pd.Series(labels.to_numpy(), index=frame["index"]),
                                      pd.Series(frame["root"].to_numpy(), index=frame["index"])),
            "recall_by_kind": _recall_by(frame, labels, kinds)}


def stage_quality(spark: SparkSession, cfg: Config, frame: pd.DataFrame) -> dict:
    """Quality of the dedup stage's duplicate clusters."""
    clusters = delta.read_table(spark, cfg, "dup_clusters").select("conversation_id", "cluster_id").toPandas()
    labels = frame[["conversation_id"]].merge(clusters, on="conversation_id", how="left")["cluster_id"]
    return quality(frame, labels.fillna(frame["conversation_id"]))


def _texts(spark: SparkSession, cfg: Config, frame: pd.DataFrame) -> pd.DataFrame:
    conv = (delta.read_table(spark, cfg, "conversations")
            .select("conversation_id", F.concat_ws("\n", F.transform("messages", lambda m: m["content"])).alias("text"))
            .toPandas())
    return frame[["conversation_id"]].merge(conv, on="conversation_id", how="left")


def mllib_baseline(spark: SparkSession, cfg: Config, frame: pd.DataFrame, threshold: float, tables: int,
                   time_limit_s: float = 0) -> dict:
    """MLlib MinHashLSH.approxSimilarityJoin over all conversations of the corpus, timed, clustered, scored.

    `time_limit_s` > 0 cancels the join after that long: its time is then a lower bound (`finished: false`), since
    its cost grows faster than linearly (16 s at 2k, 216 s at 10k conversations on this machine).
    """
    import threading

    conv = (delta.read_table(spark, cfg, "conversations").where(F.col("parent_id").isNull())
            .select(F.col("conversation_id").alias("id"),
                    F.concat_ws("\n", F.transform("messages", lambda m: m["content"])).alias("text")))
    method = (f"MLlib MinHashLSH.approxSimilarityJoin (HashingTF 2^18 binary word sets, numHashTables={tables}, "
              f"Jaccard >= {threshold})")
    done, expired = threading.Event(), threading.Event()

    def watchdog(group: str) -> None:  # past the limit, cancel the group's jobs until the call returns
        if done.wait(time_limit_s):
            return
        expired.set()
        while not done.is_set():
            spark.sparkContext.cancelJobGroup(group)
            done.wait(0.2)

    with measure("mllib_minhashlsh", spark) as t:
        if time_limit_s > 0:
            threading.Thread(target=watchdog, args=(t["group"],), daemon=True).start()
        try:
            pairs = baselines.mllib_similarity_join(conv, threshold, num_tables=tables).toPandas()
        except Exception as exc:  # noqa: BLE001 - cancelled at the limit: report a lower bound
            if not expired.is_set():
                raise
            log.warning("mllib baseline cancelled after %.0f s (%s)", time_limit_s, str(exc).splitlines()[0][:200])
            pairs = None
        finally:
            done.set()
    if pairs is None:
        return {"method": method, "finished": False, "time_limit_s": time_limit_s, "time": t}
    ids = frame["conversation_id"].tolist()
    known = set(ids)
    pairs = pairs[pairs["a"].isin(known) & pairs["b"].isin(known)]
    labels = baselines.component_labels(ids, pairs["a"].tolist(), pairs["b"].tolist())
    return {"method": method, "finished": True, "pairs": len(pairs), "time": t,
            **quality(frame, frame["conversation_id"].map(labels))}


def sample_frame(frame: pd.DataFrame, size: int) -> pd.DataFrame:
    """A deterministic sample of whole truth groups (roots chosen by hash), about `size` rows."""
    if len(frame) <= size:
        return frame
    roots = sorted(frame["root"].unique(), key=lambda r: hashlib.sha256(str(r).encode()).hexdigest())
    counts = frame.groupby("root").size()
    keep, total = [], 0
    for r in roots:
        if total >= size:
            break
        keep.append(r)
        total += int(counts[r])
    return frame[frame["root"].isin(set(keep))].reset_index(drop=True)


def jaccard_baseline(spark: SparkSession, cfg: Config, frame: pd.DataFrame, threshold: float, size: int,
                     n_total: int) -> dict:
    """The word-set Jaccard placeholder over all pairs of a sample (it is quadratic), timed and extrapolated."""
    sample = sample_frame(frame, size)
    texts = _texts(spark, cfg, sample)["text"].fillna("").tolist()
    with measure("wordset_jaccard", None) as t:
        i, j, _ = baselines.jaccard_all_pairs(texts, threshold)
    ids = sample["conversation_id"].tolist()
    labels = baselines.component_labels(ids, [ids[x] for x in i], [ids[x] for x in j])
    scale = (n_total / max(1, len(sample))) ** 2
    return {"method": f"word-set Jaccard >= {threshold}, all pairs of a {len(sample)}-conversation sample",
            "sample": len(sample), "pairs": len(i), "time": t,
            "extrapolated_wall_s_full": round(t["wall_s"] * scale, 1), **quality(sample, sample["conversation_id"].map(labels))}


def embedding_comparison(spark: SparkSession, cfg: Config, n_texts: int) -> dict:
    """Texts/s of the dedup stage's Spark embedding path (mapInPandas) vs plain SentenceTransformer.encode on the
    same texts in this process. Steady state (`spark_vs_plain_throughput`): a warm Spark run (workers up, model
    loaded) vs encode alone; cold (`spark_cold_vs_plain_with_load`): first Spark run vs model load + encode."""
    from etl.dedup import udfs
    from etl.dedup.embedder import build_model, model_key, pick_device

    conf = cfg.dedup.embeddings
    answers = (delta.read_table(spark, cfg, "conversations").where(F.col("parent_id").isNull())
               .select(F.sha2(F.concat_ws("\n", F.transform(F.filter("messages", lambda m: m["role"] == "assistant"),
                                                            lambda m: m["content"])), 256).alias("text_hash"),
                       F.concat_ws("\n", F.transform(F.filter("messages", lambda m: m["role"] == "assistant"),
                                                     lambda m: m["content"])).alias("text"))
               .dropDuplicates(["text_hash"]).orderBy("text_hash").limit(n_texts).toPandas())
    texts = answers["text"].tolist()
    df = spark.createDataFrame(answers)
    batch = udfs.task_batch_size(spark, conf)
    laid_out, threads = udfs.embedding_tasks(spark, df, len(texts), batch)  # as the dedup stage does
    embed = udfs.embed_fn(conf, model_key(conf), threads)

    def spark_path(step: str) -> dict:
        with measure(step, spark) as t:
            laid_out.mapInPandas(embed, udfs.EMBED_OUT_SCHEMA).write.format("noop").mode("overwrite").save()
        return t

    # cold: Python workers start and load the model; warm: the same job again on the reused workers (the steady
    # state of a long dedup stage, where one model load serves thousands of texts)
    spark_cold, spark_warm = spark_path("embed_spark_cold"), spark_path("embed_spark_warm")
    with measure("embed_plain_load", None) as load_t:
        model = build_model(conf, pick_device(conf.device))  # same device, precision and sequence length as the Spark path
    with measure("embed_plain", None) as plain_t:
        model.encode(texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)
    n = len(texts)

    def rates(t: dict) -> dict:
        return {**t, "texts_per_s": round(n / max(t["wall_s"], 1e-9), 2),
                "texts_per_cpu_s": round(n / max(t.get("cpu_s", 0), 1e-9), 2)}

    plain_rate = n / max(plain_t["wall_s"], 1e-9)
    return {"texts": n, "mean_chars": round(float(np.mean([len(x) for x in texts])), 1) if n else 0,
            "spark": rates(spark_warm), "spark_cold": rates(spark_cold), "plain": rates(plain_t),
            "plain_model_load": load_t,
            "spark_vs_plain_throughput": round(n / max(spark_warm["wall_s"], 1e-9) / plain_rate, 3) if plain_rate else None,
            "spark_cold_vs_plain_with_load": round((plain_t["wall_s"] + load_t["wall_s"]) / max(spark_cold["wall_s"], 1e-9), 3),
            "spark_vs_plain_cpu_efficiency": round(plain_t.get("cpu_s", 0) / max(spark_warm.get("cpu_s", 0), 1e-9), 3)}
