"""generators: the synthetic families (edge_case_synthetic, sarcasm, roleplay_simulator) -> `conversations`.

Each task (family, index) is paired with a real seed row, chosen by a seed-salted hash order so the pairing is
stable: roleplay personas from esconv sessions (emotion, problem, situation), topics for edge cases and sarcasm
from counsel_chat. The pandas builders in etl.generators.synthetic render the templates; generated text goes
through the PII redactor like ingested text. The stage owns exactly its families' slice of the table.
"""

from __future__ import annotations

import json
import logging
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, IntegerType, LongType, StringType, StructField, StructType

from etl import contract
from etl.config import Config
from etl.generators import synthetic
from etl.generators.rows import strings_as_objects
from etl.generators.templates import SECTION_ROLEPLAY, load_templates
from etl.io import delta
from etl.schemas import CONVERSATIONS, MESSAGES

log = logging.getLogger(__name__)

STAGE = "generators"
FAMILIES = synthetic.FAMILIES
SEED_COLUMNS = ("conversation_id", "topic", "emotion_type", "problem_type", "situation")

TASK_SCHEMA = StructType([StructField("family", StringType(), False), StructField("index", LongType(), False)]
                         + [StructField(c, StringType(), True) for c in SEED_COLUMNS])
GENERATED_SCHEMA = StructType([
    StructField("kind", StringType(), False),  # conversation | skip
    StructField("conversation_id", StringType(), True),
    StructField("family", StringType(), False),
    StructField("task_index", LongType(), True),
    StructField("source_uri", StringType(), True),
    StructField("source_locator", StringType(), True),
    StructField("messages_json", StringType(), True),
    StructField("metadata_json", StringType(), True),
    StructField("topic", StringType(), True),
    StructField("parent_id", StringType(), True),
    StructField("content_hash", StringType(), True),
    StructField("turn_count", IntegerType(), True),
    StructField("char_count", IntegerType(), True),
    StructField("pii_redacted", BooleanType(), True),
    StructField("skip_reason", StringType(), True),
    StructField("skip_count", LongType(), True),
])
KIND_CONVERSATION, KIND_SKIP = "conversation", "skip"


def family_list_sql(names) -> str:
    """Family names as a quoted SQL list for replaceWhere."""
    return ", ".join("'" + n.replace("'", "''") + "'" for n in names) or "''"


def topic_seeds(conversations: DataFrame, families: tuple) -> DataFrame:
    """Counsel-style rows with a topic: the topic mix of edge cases and sarcasm follows the real one."""
    return (conversations.where(F.col("family").isin(list(families)) & F.col("topic").isNotNull()
                                & (F.trim("topic") != ""))
            .select("conversation_id", F.lower(F.trim("topic")).alias("topic"),
                    *[F.lit(None).cast("string").alias(c) for c in ("emotion_type", "problem_type", "situation")]))


def persona_seeds(conversations: DataFrame, families: tuple) -> DataFrame:
    """esconv sessions as personas: emotion_type, problem_type and situation from their metadata."""
    return (conversations.where(F.col("family").isin(list(families)))
            .select("conversation_id", F.lit(None).cast("string").alias("topic"),
                    *[F.col("metadata").getItem(c).alias(c) for c in ("emotion_type", "problem_type", "situation")]))


def ranked_seeds(seeds: DataFrame, seed: int) -> DataFrame:
    """Seeds numbered 0..n-1 in a seed-salted hash order (stable across runs, partitions and retries)."""
    key = F.sha2(F.concat_ws("\u001f", F.lit(str(seed)), F.col("conversation_id")), 256)
    return seeds.withColumn("seed_rank", (F.row_number().over(_order_by(key)) - 1).cast("long"))


def _order_by(key):
    from pyspark.sql import Window

    return Window.orderBy(key, F.col("conversation_id"))


def tasks_with_seeds(tasks: DataFrame, seeds: DataFrame, n_seeds: int) -> DataFrame:
    """Task i of a family takes seed i mod n (all seed columns null when there are none)."""
    if n_seeds <= 0:
        return tasks.select("family", "index", *[F.lit(None).cast("string").alias(c) for c in SEED_COLUMNS])
    keyed = tasks.withColumn("seed_rank", F.pmod(F.col("index"), F.lit(n_seeds)))
    return keyed.join(seeds, on="seed_rank", how="left").select("family", "index", *SEED_COLUMNS)


def _redactor(enabled: bool):
    if not enabled:
        return None
    try:
        from etl.pii import redact_messages
    except ImportError:
        log.warning("etl.pii is not available: generated text is written unredacted (pii_redacted=false)")
        return None
    return redact_messages


def generate_fn(seed: int, templates, mix: dict, pii_enabled: bool):
    """mapInPandas function: tasks -> generated conversation rows plus one row per (family, skip reason)."""

    def generate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        redact = _redactor(pii_enabled)
        cols = [f.name for f in GENERATED_SCHEMA.fields]
        for batch in batches:
            rows, skipped = synthetic.generate_rows(batch, seed, templates, mix)
            out = []
            for r in rows.to_dict("records"):
                messages = redact(r["messages"])[0] if redact else r["messages"]
                out.append({**r, "kind": KIND_CONVERSATION, "pii_redacted": redact is not None,
                            "task_index": int(r["metadata"]["index"]),
                            "messages_json": json.dumps(messages, ensure_ascii=False),
                            "metadata_json": json.dumps(r["metadata"], ensure_ascii=False),
                            "content_hash": contract.content_hash(messages), "turn_count": len(messages),
                            "char_count": sum(len(m["content"]) for m in messages)})
            for key, n in sorted(skipped.items()):
                family, reason = key.split(":", 1)
                out.append({"kind": KIND_SKIP, "family": family, "skip_reason": reason, "skip_count": n})
            yield strings_as_objects(pd.DataFrame(out, columns=cols), GENERATED_SCHEMA)

    return generate



def first_distinct(generated: DataFrame, volumes: dict) -> DataFrame:
    """Per family, exact repeats (same content hash) dropped, then the first `volume` rows by task index:
    the same rows whatever the partitioning, because both orders are on stable keys."""
    from pyspark.sql import Window

    conv = generated.where(F.col("kind") == KIND_CONVERSATION)
    first = Window.partitionBy("family", "content_hash").orderBy("task_index")
    by_index = Window.partitionBy("family").orderBy("task_index")
    volume = F.coalesce(F.element_at(F.create_map(*[x for f, v in sorted(volumes.items())
                                                    for x in (F.lit(f), F.lit(int(v)))]), F.col("family")),
                        F.lit(0)) if volumes else F.lit(0)
    distinct = conv.withColumn("_first", F.row_number().over(first) == 1).where("_first")
    return distinct.withColumn("_rank", F.row_number().over(by_index)).where(F.col("_rank") <= volume) \
        .drop("_first", "_rank")


def conversations_from_generated(generated: DataFrame, run_id: str) -> DataFrame:
    """Generated rows -> the conversations contract."""
    return generated.select(
        "conversation_id", "family", "source_uri", F.lit(None).cast("string").alias("source_etag"), "source_locator",
        F.lit(run_id).alias("ingest_run_id"),
        F.from_json("messages_json", MESSAGES).alias("messages"),
        "content_hash",
        F.from_json("metadata_json", "map<string,string>").alias("metadata"),
        "topic", "turn_count", "char_count",
        F.lit(None).cast("double").alias("quality_score"),
        "pii_redacted", "parent_id",
    )


def _tasks(spark: SparkSession, volumes: dict, families: tuple, oversample: int) -> DataFrame:
    rows = [(family, i) for family in families for i in range(int(volumes.get(family, 0)) * max(1, oversample))]
    return spark.createDataFrame(rows, "family string, index long")


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Generate the synthetic families from templates and real seeds; write their slice of `conversations`."""
    gen = cfg.generators
    templates = load_templates(gen.templates)
    conversations = delta.read_table(spark, cfg, CONVERSATIONS)
    parts, cached, seed_counts = [], [], {}
    for families, seeds in (((SECTION_ROLEPLAY,), persona_seeds(conversations, gen.persona_seed_families)),
                            (tuple(f for f in FAMILIES if f != SECTION_ROLEPLAY),
                             topic_seeds(conversations, gen.topic_seed_families))):
        ranked = ranked_seeds(seeds, gen.seed).persist()
        cached.append(ranked)
        n = ranked.count()
        seed_counts[",".join(families)] = n
        parts.append(tasks_with_seeds(_tasks(spark, gen.volumes, families, gen.oversample), ranked, n))
    generated = (parts[0].unionByName(parts[1]).repartition("family", "index")
                 .mapInPandas(generate_fn(gen.seed, templates, gen.mix, cfg.pii.enabled), GENERATED_SCHEMA)
                 .persist())
    cached.append(generated)
    try:
        conv = conversations_from_generated(first_distinct(generated, gen.volumes), run_id)
        written = delta.write_table(conv, cfg, CONVERSATIONS, run_id, STAGE,
                                    replace_where=f"family IN ({family_list_sql(FAMILIES)})")
        by_family = {r["family"]: r["n"] for r in conv.groupBy("family").agg(F.count(F.lit(1)).alias("n")).collect()}
        skips = {f"{r['family']}:{r['skip_reason']}": int(r["n"]) for r in
                 generated.where(F.col("kind") == KIND_SKIP).groupBy("family", "skip_reason")
                 .agg(F.sum("skip_count").alias("n")).collect()}
        candidates = {r["family"]: (int(r["n"]), int(r["distinct"])) for r in
                      generated.where(F.col("kind") == KIND_CONVERSATION).groupBy("family")
                      .agg(F.count(F.lit(1)).alias("n"), F.countDistinct("content_hash").alias("distinct")).collect()}
    finally:
        for frame in cached:
            frame.unpersist()
    skips.update({f"{family}:exact_repeat": n - d for family, (n, d) in candidates.items() if n > d})
    skips.update({f"template:{k}": v for k, v in templates.skipped.items()})
    short = {f: int(v) - by_family.get(f, 0) for f, v in gen.volumes.items() if by_family.get(f, 0) < int(v)}
    if short:
        log.warning("generators: fewer distinct conversations than the volume asks for %s; add template variety "
                    "or raise generators.oversample", short)
    log.info("generators: %s written, skipped %s, seeds %s", by_family, skips, seed_counts)
    return {"conversations": written.rows, "changed": written.changed, "by_family": by_family,
            "skipped": skips, "seeds": seed_counts, "shortfall": short}
