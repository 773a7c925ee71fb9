"""preference_pairs: conversations + splits + dup_clusters + embeddings -> `preference_pairs` (DPO data).

The five strategies are plain pandas functions (etl.generators.preference) run per group with
`groupBy(...).applyInPandas` (ranked per question and degraded per prompt, many groups to a hash bucket; hard
negatives per split) or per batch with `mapInPandas` (native, safety: one row -> at most one pair). Each function also reports why it skipped
input; those counts travel as marked rows of the same output and are split off here. Pairs failing hygiene
(etl.generators.hygiene) are dropped and counted. Only canonical members of duplicate clusters are used.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable, Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from etl import contract, turn_keys
from etl.config import Config
from etl.generators import hygiene
from etl.generators import preference as pref
from etl.generators.rows import (
    PAIR_COLUMNS,
    as_messages,
    split_prompt,
    strings_as_objects,
)
from etl.generators.templates import load_templates
from etl.io import delta
from etl.schemas import (
    CONVERSATIONS,
    DUP_CLUSTERS,
    EMBEDDINGS,
    PREFERENCE_PAIRS,
    PREFERENCE_PAIRS_SCHEMA,
    SPLITS,
)

log = logging.getLogger(__name__)

STAGE = "preference_pairs"
SKIP_PREFIX = "skip:"
PAIR_ROWS_SCHEMA = StructType(list(PREFERENCE_PAIRS_SCHEMA.fields) + [
    StructField("skip_reason", StringType(), True), StructField("skip_count", LongType(), True)])
INPUT_COLUMNS = ["conversation_id", "family", "messages", "metadata", "quality_score", "topic", "split",
                 "split_group", "cluster_id"]
KEYS_SCHEMA = StructType([StructField("conversation_id", StringType(), False),
                          StructField("prompt_key", StringType(), True),
                          StructField("first_user_hash", StringType(), True),
                          StructField("first_user_text", StringType(), True)])
CHECKS_SCHEMA = StructType([
    StructField("pair_id", StringType(), False), StructField("strategy", StringType(), False),
    StructField("split", StringType(), False), StructField("prompt_hash", StringType(), False),
    StructField("chosen_hash", StringType(), False), StructField("rejected_hash", StringType(), False),
    StructField("chosen_chars", LongType(), False), StructField("rejected_chars", LongType(), False),
    StructField("jaccard", DoubleType(), False)])


def pair_rows(strategy: str, pairs: pd.DataFrame, skips) -> pd.DataFrame:
    """Pairs plus one marked row per skip reason, in PAIR_ROWS_SCHEMA (skip rows carry placeholders)."""
    marks = [{"pair_id": f"{SKIP_PREFIX}{strategy}:{reason}", "prompt": [], "chosen": [], "rejected": [],
              "strategy": strategy, "margin": None, "chosen_score": None, "rejected_score": None,
              "source_conversation_ids": [], "family": "", "split": "", "skip_reason": reason, "skip_count": n}
             for reason, n in sorted(skips.items()) if n]
    rows = [{**p, "skip_reason": None, "skip_count": None} for p in pairs.to_dict("records")]
    return strings_as_objects(pd.DataFrame(rows + marks, columns=[f.name for f in PAIR_ROWS_SCHEMA.fields]),
                              PAIR_ROWS_SCHEMA)


def bucketed(rows: DataFrame, keys: list[str], strategy: str, fn: Callable) -> DataFrame:
    """groupBy(keys).applyInPandas(fn) with one Python call per hash bucket of the keys instead of per group.

    A Spark group costs an Arrow batch and a pandas frame (about 5 ms: 10k prompts spent 70 s there), and so does
    a pandas group inside a bucket (2 ms: 32k questions spent 21 s): a bucket holds many groups and fn groups the
    rows by the keys itself (ranked_pairs by family, question_id and prompt; degraded_pairs by prompt_key).
    """
    buckets = int(rows.sparkSession.conf.get("spark.sql.shuffle.partitions", "8"))

    def apply(bucket: pd.DataFrame) -> pd.DataFrame:
        return pair_rows(strategy, *fn(bucket.drop(columns=["_bucket"])))

    return (rows.withColumn("_bucket", F.pmod(F.xxhash64(*keys), F.lit(buckets)))
            .groupBy("_bucket").applyInPandas(apply, PAIR_ROWS_SCHEMA))


def batch_fn(strategy: str, fn: Callable) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """mapInPandas function for row-wise strategies."""
    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield pair_rows(strategy, *fn(batch))
    return apply


def pair_inputs(conversations: DataFrame, splits: DataFrame, clusters: DataFrame) -> DataFrame:
    """Canonical conversations with their split, split group and duplicate cluster (absent tables: nulls)."""
    joined = (conversations
              .join(splits.select("conversation_id", "split", "split_group"), on="conversation_id", how="left")
              .join(clusters.select("conversation_id", "cluster_id", "is_canonical"), on="conversation_id",
                    how="left"))
    return joined.where(F.coalesce(F.col("is_canonical"), F.lit(True))).select(*INPUT_COLUMNS)


def _keys(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        rows = []
        for cid, messages in zip(batch["conversation_id"], batch["messages"]):
            msgs = as_messages(messages)
            prompt, _ = split_prompt(msgs)
            first = contract.first_user_text(msgs)
            rows.append({"conversation_id": cid, "prompt_key": contract.content_hash(prompt) if prompt else None,
                         "first_user_hash": contract.text_hash(first) if first else None, "first_user_text": first})
        yield strings_as_objects(pd.DataFrame(rows, columns=[f.name for f in KEYS_SCHEMA.fields]), KEYS_SCHEMA)


def with_prompt_keys(inputs: DataFrame) -> DataFrame:
    """Adds prompt_key (content hash of the turns before the first answer) and the first user turn's hash."""
    keys = inputs.select("conversation_id", "messages").mapInPandas(_keys, KEYS_SCHEMA)
    return inputs.join(keys, on="conversation_id", how="left")


def ranked_rows(inputs: DataFrame, families: tuple, min_margin: float, seed: int, per_prompt: int) -> DataFrame:
    """Ranked human answers, ranked per (family, question id, prompt); one Python call per hash bucket."""
    rows = inputs.where(F.col("family").isin(list(families))).withColumn(
        "question_id", F.coalesce(F.col("metadata").getItem("question_id"), F.col("conversation_id")))
    return bucketed(rows, [*pref.RANKED_GROUP_COLUMNS, "prompt_key"], pref.RANKED,
                    lambda b: pref.ranked_pairs(b, min_margin, seed, per_prompt))


def native_rows(inputs: DataFrame, families: tuple, seed: int) -> DataFrame:
    """Red-team transcripts with both continuations: row-wise, so mapInPandas."""
    fn = batch_fn(pref.NATIVE, lambda b: pref.native_pairs(b, seed))
    return inputs.where(F.col("family").isin(list(families))).mapInPandas(fn, PAIR_ROWS_SCHEMA)


def degraded_rows(keyed: DataFrame, families: tuple, templates, seed: int, per_prompt: int) -> DataFrame:
    """One group per prompt: its best answer against degraded versions."""
    return bucketed(keyed.where(F.col("family").isin(list(families))), ["prompt_key"], pref.DEGRADED,
                    lambda b: pref.degraded_pairs(b, templates, seed, per_prompt))


def safety_rows(inputs: DataFrame, families: tuple, templates, seed: int) -> DataFrame:
    """Crisis / adversarial prompts against unsafe or dismissive replies: row-wise, so mapInPandas."""
    fn = batch_fn(pref.SAFETY, lambda b: pref.safety_pairs(b, templates, seed))
    return inputs.where(F.col("family").isin(list(families))).mapInPandas(fn, PAIR_ROWS_SCHEMA)


def hard_negative_fn(min_cos: float, max_cos: float, k: int, seed: int, model_failed: bool) -> Callable:
    """Per split: find neighbours among the prompts' cached vectors (cache_prompt_vectors filled the gaps), pair.
    `model_failed`: the stage could not embed the missing prompts, so those skips say so."""
    def apply(group: pd.DataFrame) -> pd.DataFrame:
        neighbours = pref.nearest_neighbours(group.rename(columns={"prompt_key": "prompt_hash"}), min_cos, max_cos, k)
        pairs, skips = pref.hard_negative_pairs(group, neighbours, seed)
        if model_failed:  # every prompt still without a vector is one the cache missed and no model could embed
            skips["embedding_model_unavailable"] += skips.pop("no_embedding", 0)
        return pair_rows(pref.HARD_NEGATIVE, pairs, skips)
    return apply


def best_answer_per_prompt(keyed: DataFrame) -> DataFrame:
    """One representative conversation per prompt: the highest quality score, then the smallest id."""
    from pyspark.sql import Window

    w = Window.partitionBy("prompt_key").orderBy(F.col("quality_score").desc_nulls_last(), "conversation_id")
    return keyed.where(F.col("prompt_key").isNotNull()).withColumn("_rank", F.row_number().over(w)) \
        .where(F.col("_rank") == 1).drop("_rank")


def cache_prompt_vectors(spark: SparkSession, cfg: Config, keyed: DataFrame, run_id: str) -> dict:
    """Embed the hard-negative prompts the embeddings cache lacks (dedup skips uninformative texts) and store them,
    so a rerun needs no model here. Without a model the prompts stay missing; the per-split step counts them."""
    from etl.stages.dedup import embed_missing, one_text_per_hash

    prompts = one_text_per_hash(keyed.where(F.col("family").isin(list(cfg.generators.hard_negative_families))
                                            & F.col("first_user_hash").isNotNull())
                                .select(F.col("first_user_hash").alias("text_hash"),
                                        F.col("first_user_text").alias("text"))).persist()
    try:
        return embed_missing(spark, cfg, prompts, run_id, STAGE)[1]
    except Exception as exc:  # noqa: BLE001 - no model: hard negatives skip those prompts and say why
        log.warning("hard negatives: prompts missing from the embeddings cache not embedded (%s)", exc)
        return {"texts_embedded": 0, "embedding_error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        prompts.unpersist()


def hard_negative_prompts(keyed: DataFrame, families: tuple) -> DataFrame:
    """The rows hard negatives are built from: the best answer per prompt of the configured families."""
    return best_answer_per_prompt(keyed.where(F.col("family").isin(list(families))))


def hard_negative_rows(keyed: DataFrame, embeddings: DataFrame, families: tuple, cfg: Config,
                       model_failed: bool = False) -> DataFrame:
    """Prompts joined to their cached first-user-turn vectors, one applyInPandas group per split."""
    gen = cfg.generators
    vectors = (embeddings.select(F.col("text_hash").alias("first_user_hash"), "vector")
               .dropDuplicates(["first_user_hash"]))
    rows = hard_negative_prompts(keyed, families).join(vectors, on="first_user_hash", how="left")
    fn = hard_negative_fn(gen.hard_negative_min_cosine, gen.hard_negative_max_cosine, gen.hard_negative_neighbours,
                          gen.seed, model_failed)
    return rows.groupBy("split").applyInPandas(fn, PAIR_ROWS_SCHEMA)


def cap_split_rates(rows: DataFrame, keyed: DataFrame, families: tuple, min_prompts: int) -> DataFrame:
    """Hard-negative pairs cut to one rate per family across splits (pref.split_rate_caps), lowest pair ids kept;
    the cut pairs are counted as skip `split_rate_cap`. `rows` should be cached: it is counted, then filtered."""
    hard = (F.col("strategy") == pref.HARD_NEGATIVE) & F.col("skip_reason").isNull()
    pairs = {(r["family"], r["split"]): int(r["n"]) for r in
             rows.where(hard).groupBy("family", "split").agg(F.count(F.lit(1)).alias("n")).collect()}
    prompts = {(r["family"], r["split"]): int(r["n"]) for r in
               hard_negative_prompts(keyed, families).where(F.col("split").isNotNull())
               .groupBy("family", "split").agg(F.count(F.lit(1)).alias("n")).collect()}
    caps = pref.split_rate_caps(pairs, prompts, min_prompts)
    cut = sum(pairs.values()) - sum(caps.values())
    if not cut:
        return rows
    log.info("hard negatives: %d of %d pairs cut to equal rates per split (kept %s)", cut, sum(pairs.values()),
             {f"{f}/{s}": n for (f, s), n in sorted(caps.items())})
    from pyspark.sql import Window

    cap = rows.sparkSession.createDataFrame([(f, s, n) for (f, s), n in caps.items()],
                                            "family string, split string, _cap long")
    rank = F.row_number().over(Window.partitionBy("family", "split").orderBy("pair_id"))
    kept = (rows.where(hard).join(F.broadcast(cap), ["family", "split"], "left").withColumn("_rank", rank)
            .where(F.col("_rank") <= F.col("_cap")).select(*[f.name for f in PAIR_ROWS_SCHEMA.fields]))
    mark = pair_rows(pref.HARD_NEGATIVE, pd.DataFrame(columns=PAIR_COLUMNS), Counter(split_rate_cap=cut))
    return (rows.where(~hard).unionByName(kept)
            .unionByName(rows.sparkSession.createDataFrame(mark, PAIR_ROWS_SCHEMA)))


def only_pairs(rows: DataFrame) -> DataFrame:
    """The pairs of the strategy outputs, in PREFERENCE_PAIRS_SCHEMA."""
    return rows.where(F.col("skip_reason").isNull()).select(*PAIR_COLUMNS)


def skip_counts(rows: DataFrame) -> DataFrame:
    """(strategy, skip_reason, n) from the skip marks of the strategy outputs."""
    return (rows.where(F.col("skip_reason").isNotNull()).groupBy("strategy", "skip_reason")
            .agg(F.sum("skip_count").alias("n")))


def pair_checks_fn(shingle_size: int) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """mapInPandas function: pairs -> hygiene.pair_checks rows (CHECKS_SCHEMA)."""
    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield hygiene.pair_checks(batch, shingle_size)
    return apply


def hygiene_flags(pairs: DataFrame, sft_hashes: DataFrame, max_jaccard: float, shingle_size: int,
                  exempt: tuple) -> DataFrame:
    """CHECKS_SCHEMA columns plus drop_reason (null = keep): the Spark form of hygiene.drop_reasons.
    `sft_hashes`: distinct text_hash of every assistant turn of the conversations (turn_keys.assistant_hashes)."""
    checks = pairs.mapInPandas(pair_checks_fn(shingle_size), CHECKS_SCHEMA).persist()  # read twice below
    sft = sft_hashes.select("text_hash").distinct().withColumn("in_sft", F.lit(True))
    splits_per_prompt = checks.groupBy("prompt_hash").agg(F.countDistinct("split").alias("prompt_splits"))
    flagged = (checks.join(splits_per_prompt, on="prompt_hash", how="left")
               .join(sft.withColumnRenamed("text_hash", "rejected_hash"), on="rejected_hash", how="left"))
    is_empty = (F.col("chosen_chars") == 0) | (F.col("rejected_chars") == 0)
    is_identical = F.col("chosen_hash") == F.col("rejected_hash")
    is_near = F.col("jaccard") >= F.lit(max_jaccard)
    in_two_splits = F.col("prompt_splits") > 1
    rejected_in_sft = F.coalesce(F.col("in_sft"), F.lit(False)) & ~F.col("strategy").isin(list(exempt) or [""])
    reason = (F.when(is_empty, hygiene.DROP_EMPTY).when(is_identical, hygiene.DROP_IDENTICAL)
              .when(is_near, hygiene.DROP_NEAR_IDENTICAL).when(in_two_splits, hygiene.DROP_TWO_SPLITS)
              .when(rejected_in_sft, hygiene.DROP_REJECTED_IN_SFT))
    return flagged.select(*[f.name for f in CHECKS_SCHEMA.fields], reason.alias("drop_reason"),
                          F.coalesce(F.col("in_sft"), F.lit(False)).alias("rejected_in_sft_any"))


def build_pair_rows(keyed: DataFrame, embeddings: DataFrame, templates, cfg: Config, model_failed: bool = False
                    ) -> DataFrame:
    """All five strategies' outputs (pairs and skip marks) in PAIR_ROWS_SCHEMA."""
    gen = cfg.generators
    parts = [
        ranked_rows(keyed, gen.ranked_families, gen.ranked_min_margin, gen.seed, gen.ranked_pairs_per_prompt),
        native_rows(keyed, gen.native_families, gen.seed),
        hard_negative_rows(keyed, embeddings, gen.hard_negative_families, cfg, model_failed),
        degraded_rows(keyed, gen.degraded_families, templates, gen.seed, gen.degraded_per_prompt),
        safety_rows(keyed, gen.safety_families, templates, gen.seed),
    ]
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def _embeddings(spark: SparkSession, cfg: Config) -> DataFrame:
    """Cached vectors of the configured model (empty when the table or the model's rows are absent)."""
    table = delta.read_table(spark, cfg, EMBEDDINGS)
    try:
        from etl.dedup.embedder import model_key

        return table.where(F.col("model") == model_key(cfg.dedup.embeddings))
    except ImportError:
        return table


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Build, check and write the preference pairs; return counts per strategy and split, skips and hygiene."""
    gen = cfg.generators
    templates = load_templates(gen.templates)
    conversations = delta.read_table(spark, cfg, CONVERSATIONS)
    splits, clusters = delta.read_table(spark, cfg, SPLITS), delta.read_table(spark, cfg, DUP_CLUSTERS)
    inputs = pair_inputs(conversations, splits, clusters)
    keyed = with_prompt_keys(inputs).persist()
    prompt_vectors = cache_prompt_vectors(spark, cfg, keyed, run_id)
    built = build_pair_rows(keyed, _embeddings(spark, cfg), templates, cfg,
                            model_failed="embedding_error" in prompt_vectors).persist()
    rows = cap_split_rates(built, keyed, gen.hard_negative_families, gen.hard_negative_rate_min_prompts).persist()
    keys, key_counts = turn_keys.keys_for(spark, cfg, conversations, run_id, STAGE)
    try:
        pairs = only_pairs(rows)
        flags = hygiene_flags(pairs, turn_keys.assistant_hashes(keys), gen.pair_max_jaccard, cfg.dedup.shingle_size,
                              gen.rejected_sft_exempt).persist()
        kept = pairs.join(flags.where(F.col("drop_reason").isNull()).select("pair_id"), on="pair_id", how="left_semi")
        written = delta.write_table(kept, cfg, PREFERENCE_PAIRS, run_id, STAGE)
        skips = {f"{r['strategy']}:{r['skip_reason']}": int(r["n"]) for r in skip_counts(rows).collect()}
        dropped = {f"{r['strategy']}:{r['drop_reason']}": int(r["n"]) for r in
                   flags.where(F.col("drop_reason").isNotNull()).groupBy("strategy", "drop_reason")
                   .agg(F.count(F.lit(1)).alias("n")).collect()}
        kept_checks = flags.where(F.col("drop_reason").isNull()).toPandas()
        flags.unpersist()
    finally:
        for frame in (keys, rows, built, keyed):
            frame.unpersist()
    sft_hit = set(kept_checks.loc[kept_checks["rejected_in_sft_any"], "rejected_hash"])
    figures = hygiene.hygiene_figures(kept_checks, gen.pair_max_jaccard, sft_hit, gen.rejected_sft_exempt)
    figures["rejected_in_sft_exempt_strategies"] = int(kept_checks["rejected_in_sft_any"].sum())
    by_strategy_split = (kept_checks.groupby(["strategy", "split"]).size().reset_index(name="pairs")
                         .to_dict("records"))
    skips.update({f"template:{k}": v for k, v in templates.skipped.items()})
    log.info("preference_pairs: %d pairs; by strategy/split %s; skipped %s; dropped %s; hygiene %s",
             written.rows, by_strategy_split, skips, dropped, figures)
    return {"pairs": written.rows, "changed": written.changed, "by_strategy_split": by_strategy_split,
            "prompts_embedded": prompt_vectors.get("texts_embedded", 0), **key_counts,
            "skipped": skips, "dropped": dropped, "hygiene": figures}
