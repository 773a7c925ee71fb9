"""dedup: exact hashes + MinHash and embedding LSH candidates, verified, as `dup_edges` and `dup_clusters`.

Identify only: nothing is removed from `conversations`; export keeps the canonical member of each cluster.
Two relations (DESIGN.md §3):
- duplicate: the answer side is near-identical (verified) AND the prompt is near-identical too (or both prompts
  carry no information), i.e. the same conversation;
- related: a near-identical prompt under another answer, or a near-identical answer under another prompt.
Clusters are connected components of the duplicate relation only; splits use both relations.
Caches: `embeddings` (vectors), `text_features` (MinHash) and `embedding_lsh` (embedding-LSH candidates, see
etl.dedup.embedding_lsh), so a rerun with new data embeds, hashes and compares only the new texts.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from etl.config import Config, DedupConf, EmbeddingConf
from etl.dedup import clusters, embedding_lsh, udfs
from etl.dedup.embedder import model_key
from etl.dedup.features import cached_features, params_key, signature_jaccard
from etl.dedup.minhash import optimal_params
from etl.io import delta
from etl.schemas import CONVERSATIONS, DUP_CLUSTERS, DUP_EDGES, EMBEDDINGS

log = logging.getLogger(__name__)

FIELD_PROMPT, FIELD_ANSWER, FIELD_CONVERSATION = "prompt", "answer", "conversation"
KIND_DUPLICATE, KIND_RELATED = "duplicate", "related"
SOURCE_EXACT, SOURCE_MINHASH, SOURCE_EMBEDDING = "exact", "minhash", "embedding"


def band_params(conf: DedupConf) -> tuple[int, int]:
    """(bands, rows): from conf when set, else optimal for the Jaccard threshold."""
    if conf.bands:
        return conf.bands, conf.num_perm // conf.bands
    return optimal_params(conf.jaccard_threshold, conf.num_perm)


def with_texts(conv: DataFrame) -> DataFrame:
    """One row per (conversation, field): the first user turn (prompt) and all assistant turns (answer)."""
    prompt = F.filter("messages", lambda m: m["role"] == "user")[0]["content"]
    answer = F.array_join(F.transform(F.filter("messages", lambda m: m["role"] == "assistant"),
                                      lambda m: m["content"]), "\n")
    return conv.select("conversation_id", "content_hash", F.explode(F.array(
        F.struct(F.lit(FIELD_PROMPT).alias("field"), F.coalesce(prompt, F.lit("")).alias("text")),
        F.struct(F.lit(FIELD_ANSWER).alias("field"), answer.alias("text")),
    )).alias("t")).select("conversation_id", "content_hash", "t.field", "t.text")


def bucket_pairs(keys: DataFrame, max_bucket: int) -> tuple[DataFrame, DataFrame]:
    """(field, band, key, text_hash) -> candidate pairs within buckets; buckets over max_bucket are templates."""
    buckets = (keys.groupBy("field", "band", "key")
               .agg(F.array_sort(F.collect_set("text_hash")).alias("members"))
               .where(F.size("members") > 1))
    too_big = buckets.where(F.size("members") > max_bucket)
    pairs = (buckets.where(F.size("members") <= max_bucket)
             .select("field", F.explode("members").alias("h1"), "members")
             .select("field", "h1", F.explode("members").alias("h2"))
             .where(F.col("h1") < F.col("h2")).distinct())
    return pairs, too_big


def minhash_candidates(features: DataFrame, max_bucket: int) -> tuple[DataFrame, DataFrame]:
    keys = (features.where("informative").select("field", "text_hash", F.posexplode("bands").alias("band", "key"))
            .distinct())
    return bucket_pairs(keys, max_bucket)


def _cosine(a: Column, b: Column) -> Column:
    return F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0).cast("double"), lambda acc, x: acc + x)


def verify_text_pairs(cands: DataFrame, sigs: DataFrame, vectors: DataFrame, conf: DedupConf) -> DataFrame:
    """Estimated Jaccard and cosine for every candidate text pair; `near` by the field's thresholds."""
    s1 = sigs.select(F.col("text_hash").alias("h1"), F.col("signature").alias("s1"))
    s2 = sigs.select(F.col("text_hash").alias("h2"), F.col("signature").alias("s2"))
    v1 = vectors.select(F.col("text_hash").alias("h1"), F.col("vector").alias("v1"))
    v2 = vectors.select(F.col("text_hash").alias("h2"), F.col("vector").alias("v2"))
    # Jaccard first, then the signatures are dropped: rows carry one kind of array through each shuffle, not four
    lexical = (cands.join(s1, "h1", how="inner").join(s2, "h2", how="inner")
               .select("field", "h1", "h2", "source", signature_jaccard(F.col("s1"), F.col("s2"), conf.num_perm).alias("jaccard")))
    scored = (lexical.join(v1, "h1", how="left").join(v2, "h2", how="left")
              .select("field", "h1", "h2", "source", "jaccard",
                      F.when(F.col("v1").isNotNull() & F.col("v2").isNotNull(), _cosine(F.col("v1"), F.col("v2")))
                      .alias("cosine")))
    return scored.withColumn("near", near_condition(conf))


def near_condition(conf: DedupConf) -> Column:
    """Lexically near (Jaccard) or semantically near with some lexical support (cosine + Jaccard floor)."""
    lexical = F.col("jaccard") >= F.lit(conf.jaccard_threshold)
    semantic = (F.coalesce(F.col("cosine"), F.lit(0.0)) >= F.lit(conf.cosine_threshold)) & (
        F.col("jaccard") >= F.lit(conf.semantic_jaccard_floor))
    return lexical | semantic


def exact_pairs(features: DataFrame, max_group: int) -> DataFrame:
    """Conversations sharing an identical informative text: all pairs in small groups, a star in large ones."""
    groups = (features.where("informative").groupBy("field", "text_hash")
              .agg(F.array_sort(F.collect_set("conversation_id")).alias("ids")).where(F.size("ids") > 1))
    small = (groups.where(F.size("ids") <= max_group)
             .select("field", F.explode("ids").alias("a"), "ids").select("field", "a", F.explode("ids").alias("b")))
    star = groups.where(F.size("ids") > max_group).select("field", F.col("ids")[0].alias("a"), F.explode("ids").alias("b"))
    return (small.unionByName(star).where(F.col("a") < F.col("b"))
            .select("field", "a", "b", F.lit(1.0).alias("jaccard"), F.lit(1.0).alias("cosine"),
                    F.lit(SOURCE_EXACT).alias("source")))


def conversation_pairs(text_pairs: DataFrame, features: DataFrame) -> DataFrame:
    """Verified near text pairs -> the conversation pairs that hold those texts in that field."""
    t1 = features.select("field", F.col("text_hash").alias("h1"), F.col("conversation_id").alias("c1"))
    t2 = features.select("field", F.col("text_hash").alias("h2"), F.col("conversation_id").alias("c2"))
    joined = text_pairs.where("near").join(t1, ["field", "h1"], how="inner").join(t2, ["field", "h2"], how="inner")
    return joined.select("field", F.least("c1", "c2").alias("a"), F.greatest("c1", "c2").alias("b"),
                         "jaccard", "cosine", "source").where(F.col("a") != F.col("b"))


def best_pairs(pairs: DataFrame) -> DataFrame:
    """One row per (field, a, b): the best Jaccard and cosine over its text pairs and the sources that found it."""
    return (pairs.groupBy("field", "a", "b").agg(
        F.max("jaccard").alias("jaccard"), F.max("cosine").alias("cosine"),
        F.array_join(F.array_sort(F.collect_set("source")), "+").alias("source")))


def classify_edges(best: DataFrame, features: DataFrame, sigs: DataFrame, vectors: DataFrame, conf: DedupConf
                   ) -> DataFrame:
    """Answer-side pairs become duplicates when their prompts also match; everything else is related.

    `best` (best_pairs, read twice: cache it). Prompts match when they are the same text, both carry no
    information, or are near by `near_condition`. Only the distinct pairs of different prompt texts are scored,
    against the signatures and vectors by text hash (as `verify_text_pairs` scores candidates): the prompts'
    signatures and vectors are not carried to every answer pair on both sides. A prompt pair is kept as related
    unless the same two conversations are duplicates on the answer side (one window, not a second pass).
    """
    prompts = features.where(F.col("field") == FIELD_PROMPT).select("conversation_id", "text_hash", "informative")
    pa = prompts.select(F.col("conversation_id").alias("a"), F.col("text_hash").alias("pa_hash"),
                        F.col("informative").alias("pa_informative"))
    pb = prompts.select(F.col("conversation_id").alias("b"), F.col("text_hash").alias("pb_hash"),
                        F.col("informative").alias("pb_informative"))
    lo, hi = F.least("pa_hash", "pb_hash"), F.greatest("pa_hash", "pb_hash")
    answers = (best.where(F.col("field") == FIELD_ANSWER).join(pa, "a", how="left").join(pb, "b", how="left")
               .withColumn("ph1", lo).withColumn("ph2", hi))
    # verify_text_pairs carries a `source` through; the verdict is all that is read back here
    prompt_pairs = (answers.where(F.col("ph1") != F.col("ph2"))
                    .select(F.lit(FIELD_PROMPT).alias("field"), F.col("ph1").alias("h1"), F.col("ph2").alias("h2"),
                            F.lit(SOURCE_MINHASH).alias("source")).distinct())
    scored = verify_text_pairs(prompt_pairs, sigs, vectors, conf).select(
        F.col("h1").alias("ph1"), F.col("h2").alias("ph2"), F.col("near").alias("prompt_near"))
    same_prompt = F.col("pa_hash") == F.col("pb_hash")
    both_uninformative = ~F.col("pa_informative") & ~F.col("pb_informative")
    is_dup = F.coalesce(same_prompt | both_uninformative | F.col("prompt_near"), F.lit(False))
    answer_edges = answers.join(scored, ["ph1", "ph2"], how="left").select(
        "a", "b", F.when(is_dup, KIND_DUPLICATE).otherwise(KIND_RELATED).alias("kind"),
        "jaccard", "cosine", "source", F.when(is_dup, FIELD_CONVERSATION).otherwise(FIELD_ANSWER).alias("field"))
    prompt_edges = best.where(F.col("field") == FIELD_PROMPT).select(
        "a", "b", F.lit(KIND_RELATED).alias("kind"), "jaccard", "cosine", "source", F.lit(FIELD_PROMPT).alias("field"))
    answer_dup = F.max(F.col("field") == FIELD_CONVERSATION).over(Window.partitionBy("a", "b"))
    return (answer_edges.unionByName(prompt_edges).withColumn("_answer_dup", answer_dup)
            .where((F.col("field") != FIELD_PROMPT) | ~F.col("_answer_dup"))
            .select(F.col("a").alias("conversation_id_a"), F.col("b").alias("conversation_id_b"), "kind",
                    F.col("jaccard").cast("double"), F.col("cosine").cast("double"), "source", "field"))


def one_text_per_hash(texts: DataFrame) -> DataFrame:
    """(text_hash, text) with one raw text per hash: the shortest, then the lowest. Raw texts of one hash differ in
    what canonical_text drops (markup, entities, spacing), which the model sees: the choice must not depend on row
    order or partitioning (dropDuplicates keeps whichever row comes first), and the shortest is the one with the
    least markup."""
    shortest = F.min(F.struct(F.length("text").alias("n"), F.col("text").alias("text")))
    return texts.groupBy("text_hash").agg(shortest["text"].alias("text"))


def informative_texts(conv: DataFrame, features: DataFrame) -> DataFrame:
    """(text_hash, text): one raw text per distinct informative text hash of `conv`, the texts dedup embeds."""
    return one_text_per_hash(with_texts(conv).join(
        features.select("conversation_id", "field", "text_hash", "informative"), ["conversation_id", "field"],
        how="inner").where("informative").select("text_hash", "text"))


def embedding_path(n_missing: int, driver_max_texts: int, local: bool) -> str:
    """Where missing texts are embedded: none, the driver (a few, local master only) or Spark tasks."""
    if not n_missing:
        return "none"
    return "driver" if local and n_missing <= driver_max_texts else "tasks"


def embed_on_driver(spark: SparkSession, texts: DataFrame, conf: EmbeddingConf, key: str) -> DataFrame:
    """EMBED_OUT_SCHEMA rows for a few texts (text_hash, text), embedded in this process: the model loads once
    here instead of once per Python worker of the Spark tasks (EmbeddingConf.driver_max_texts; local master only,
    where the driver's machine is the executors' machine)."""
    from etl.dedup.embedder import embed_texts

    pdf = texts.select("text_hash", "text").toPandas()
    vectors = embed_texts(pdf["text"].fillna("").tolist(), conf).astype(np.float32)
    # plain lists: without Arrow (spark-submit's default) createDataFrame refuses numpy arrays for an array column
    rows = pd.DataFrame({"text_hash": pdf["text_hash"], "model": key, "vector": [v.tolist() for v in vectors]})
    return spark.createDataFrame(rows, udfs.EMBED_OUT_SCHEMA)


def embed_missing(spark: SparkSession, cfg: Config, texts: DataFrame, run_id: str, stage: str = "dedup"
                  ) -> tuple[DataFrame, dict]:
    """Vectors for every distinct text, embedding only texts the cache does not hold yet.

    `texts` (text_hash, text) is read by the counts, the embedding and the returned vectors: persist it. The
    new vectors are added with `delta.add_missing`: computed once and merged without a second comparison against
    the whole cache.
    """
    conf = cfg.dedup.embeddings
    key = model_key(conf)
    cached = delta.read_table(spark, cfg, EMBEDDINGS).where(F.col("model") == key).select("text_hash")
    missing = texts.join(cached, "text_hash", how="left_anti")
    n_missing = missing.count()
    path = embedding_path(n_missing, conf.driver_max_texts, udfs.runs_locally(spark))
    if path == "driver":
        new = embed_on_driver(spark, missing, conf, key)
    elif path == "tasks":
        todo, threads = udfs.embedding_tasks(spark, missing, n_missing, udfs.task_batch_size(spark, conf))
        new = todo.mapInPandas(udfs.embed_fn(conf, key, threads), udfs.EMBED_OUT_SCHEMA)
    if n_missing:
        delta.add_missing(new, cfg, EMBEDDINGS, ("text_hash", "model"), run_id, stage)
    vectors = (delta.read_table(spark, cfg, EMBEDDINGS).where(F.col("model") == key)
               .join(texts.select("text_hash"), "text_hash", how="left_semi").select("text_hash", "vector"))
    n_texts = texts.count()
    return vectors, {"texts_embedded": n_missing, "texts_from_cache": n_texts - n_missing, "embedded_in": path}


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Find duplicates and related rows; write dup_edges and dup_clusters; return counts."""
    conf = cfg.dedup
    bands, rows = band_params(conf)
    conv = delta.read_table(spark, cfg, CONVERSATIONS).select("conversation_id", "content_hash", "messages")
    features, hash_counts = cached_features(spark, cfg, with_texts(conv), bands, rows, run_id)
    features = features.persist()
    texts = informative_texts(conv, features).persist()  # read by embed_missing's counts, model and vectors
    started = time.perf_counter()
    vectors, embed_counts = embed_missing(spark, cfg, texts, run_id)
    embed_counts["embedding_s"] = round(time.perf_counter() - started, 1)  # model time, reported apart
    # the hyperplane keys travel with the vectors: one persisted frame serves keys, candidates and verification
    vec_bands = vectors.mapInPandas(udfs.hyperplane_fn(conf.hyperplane_bits, conf.hyperplane_tables),
                                    udfs.HYPERPLANE_SCHEMA).persist()
    vectors = vec_bands.select("text_hash", "vector")
    text_fields = features.where("informative").select("text_hash", "field").distinct()
    mh_pairs, mh_big = minhash_candidates(features, conf.max_bucket_size)
    # read by the embedding-LSH candidates, the candidate verification and classify_edges
    sigs = features.select("text_hash", "signature").dropDuplicates(["text_hash"]).persist()
    lsh_params = embedding_lsh.params_key(conf, model_key(conf.embeddings), params_key(conf, bands, rows))
    em_pairs, lsh_counts = embedding_lsh.candidates(spark, cfg, text_fields, vec_bands, sigs, lsh_params, run_id)
    cands = mh_pairs.withColumn("source", F.lit(SOURCE_MINHASH)).persist()
    scored_em = em_pairs.select("field", "h1", "h2", F.lit(SOURCE_EMBEDDING).alias("source"), "jaccard", "cosine")
    verified = (verify_text_pairs(cands, sigs, vectors, conf)
                .unionByName(scored_em.withColumn("near", near_condition(conf)))).persist()
    pairs = conversation_pairs(verified, features).unionByName(exact_pairs(features, conf.max_bucket_size))
    best = best_pairs(pairs).persist()  # read twice by classify_edges
    edges = classify_edges(best, features, sigs, vectors, conf).persist()
    w_edges = delta.write_table(edges, cfg, DUP_EDGES, run_id, "dedup")
    edges_written = delta.read_table(spark, cfg, DUP_EDGES)
    all_conv = delta.read_table(spark, cfg, CONVERSATIONS).select("conversation_id", "content_hash")
    cluster_df, cstats = clusters.duplicate_clusters(spark, all_conv, edges_written, conf.max_cluster_size)
    w_clusters = delta.write_table(cluster_df, cfg, DUP_CLUSTERS, run_id, "dedup")
    counts = {
        **embed_counts, **hash_counts,
        "bands": bands, "rows_per_band": rows,
        "candidates_minhash": cands.count(),
        **{k: v for k, v in lsh_counts.items() if k != "template_buckets_embedding"},
        "template_buckets_dropped": mh_big.count() + lsh_counts["template_buckets_embedding"],
        "verified_text_pairs": verified.where("near").count(),
        "edges": w_edges.rows,
        **{f"edges_{r['kind']}": r["n"] for r in edges_written.groupBy("kind").agg(F.count("*").alias("n")).collect()},
        **{f"exact_groups_{r['field']}": r["n"] for r in features.where("informative")
           .groupBy("field", "text_hash").count().where("count > 1").groupBy("field")
           .agg(F.count("*").alias("n")).collect()},
        **cstats, "clusters_rows": w_clusters.rows,
    }
    for df in (features, texts, sigs, vec_bands, em_pairs, cands, verified, best, edges):
        df.unpersist()
    log.info("dedup: %s", counts)
    return counts
