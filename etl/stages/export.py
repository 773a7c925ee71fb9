"""export: pinned Delta versions -> `<release_dir>/<phase>/<stage>/<split>-NNNNN-of-MMMMM.jsonl` + manifest + Croissant.

What is exported: canonical members of duplicate clusters only, redacted text only, never a parent whose windows
became `long_running_therapy`, each routed family once per curriculum stage; phase C holds the preference pairs.
No SFT (phase B) record has an assistant turn equal to some preference pair's `rejected` text (DESIGN §5): such a
conversation is left out of phase B but stays in phase A, where it is only domain text.

How: Spark joins and filters; the driver iterates one globally sorted DataFrame per record kind
(`toLocalIterator`, one partition in memory at a time) and writes the shards itself. That is fine at this
dataset's size (tens of thousands of records, ~100 MB) and is what makes the bytes reproducible: the order is a
total order on stable keys and the JSON is built by one Python function. The release is built in a staging
folder beside release_dir and renamed into place, so a crash never leaves a half-written release.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from etl.config import Config, ConfigError, is_s3
from etl.io import delta
from etl.release import croissant, records, shards
from etl.release import manifest as mf
from etl.schemas import (
    CONVERSATIONS,
    CURRICULUM,
    DUP_CLUSTERS,
    PREFERENCE_PAIRS,
    SPLITS,
)
from etl.stages import curriculum as cur
from etl.testing.crash import crash_point

log = logging.getLogger(__name__)

# Input tables, each read at one pinned version, and the stage that writes it (for error messages).
INPUT_TABLES = {CONVERSATIONS: "ingest", DUP_CLUSTERS: "dedup", SPLITS: "splits", CURRICULUM: "curriculum",
                PREFERENCE_PAIRS: "preference_pairs"}
LONG_RUNNING_FAMILY = "long_running_therapy"
RELEASE = "release"  # the `table` name of the export's crash points

# Why a conversation is left out, checked in this order (the first that applies is recorded); REJECTED_TEXT
# counts conversations left out of phase B only.
UNASSIGNED, UNROUTED, UNREDACTED = "unassigned", "unrouted", "unredacted"
EXTRACTED_PARENT, NON_CANONICAL, REJECTED_TEXT = "extracted_parent", "non_canonical", "rejected_text_sft"

ASSISTANT_HASHES_SCHEMA = StructType([StructField("id", StringType(), False),
                                      StructField("text_hash", StringType(), False)])
CONVERSATION_COLUMNS = ("conversation_id", "family", "split", "topic", "content_hash", "source_uri", "source_etag",
                        "source_locator", "parent_id", "messages")
PAIR_COLUMNS = ("pair_id", "family", "prompt_family", "split", "strategy", "margin", "chosen_score",
                "rejected_score", "source_conversation_ids", "prompt", "chosen", "rejected")


def _assistant_hashes(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for pdf in batches:
        yield records.assistant_text_hashes(pdf)


def assistant_hashes(df: DataFrame, id_col: str, messages_col: str) -> DataFrame:
    """(id, text_hash) for every assistant turn of `messages_col` (canonical text hash, as the verify gate)."""
    return (df.select(F.col(id_col).alias("id"), F.to_json(messages_col).alias("messages_json"))
            .mapInPandas(_assistant_hashes, ASSISTANT_HASHES_SCHEMA))


def conversations_with_rejected_text(conversations: DataFrame, pairs: DataFrame) -> DataFrame:
    """`conversation_id` of conversations with an assistant turn equal to some pair's rejected text."""
    rejected = assistant_hashes(pairs, "pair_id", "rejected").select("text_hash").distinct()
    turns = assistant_hashes(conversations, "conversation_id", "messages")
    return (turns.join(rejected, "text_hash", how="left_semi")
            .select(F.col("id").alias("conversation_id")).distinct())


def extracted_parents(conversations: DataFrame) -> DataFrame:
    """`conversation_id` of every conversation whose windows were extracted into long_running_therapy."""
    return (conversations.where((F.col("family") == LONG_RUNNING_FAMILY) & F.col("parent_id").isNotNull())
            .select(F.col("parent_id").alias("conversation_id")).distinct())


def export_canonical(clusters: DataFrame, parents: DataFrame) -> DataFrame:
    """(conversation_id, is_canonical): dup_clusters' choice, except where the canonical member is an extracted parent.

    A session short enough to be one window duplicates its parent exactly, and dedup may pick the parent as the
    canonical member; the parent is dropped for its windows, so the window inherits the role (else both would go).
    The heir is the smallest (content_hash, conversation_id) member that is not an extracted parent.
    """
    marked = clusters.join(parents.select("conversation_id", F.lit(True).alias("_parent")), "conversation_id",
                           how="left").withColumn("_parent", F.coalesce(F.col("_parent"), F.lit(False)))
    lost = (marked.where(F.col("is_canonical") & F.col("_parent")).select("cluster_id")
            .distinct().withColumn("_lost", F.lit(True)))
    heirs = (marked.where(~F.col("_parent")).groupBy("cluster_id")
             .agg(F.min(F.struct("content_hash", "conversation_id")).alias("_m"))
             .select("cluster_id", F.col("_m.conversation_id").alias("_heir")))
    inherits = F.coalesce(F.col("conversation_id") == F.col("_heir"), F.lit(False))
    return (marked.join(lost, "cluster_id", how="left").join(heirs, "cluster_id", how="left")
            .select("conversation_id", F.when(F.col("_lost").isNotNull(), inherits)
                    .otherwise(F.col("is_canonical")).alias("is_canonical")))


def classify_conversations(conversations: DataFrame, clusters: DataFrame, splits: DataFrame,
                           parents: DataFrame, rejected_ids: DataFrame, routed_families: list[str]) -> DataFrame:
    """Conversations with their split, `exclude_reason` (null: export) and `has_rejected_text` (keep out of B)."""
    hashed = clusters.join(conversations.select("conversation_id", "content_hash"), "conversation_id", how="left")
    flags = (conversations
             .join(export_canonical(hashed, parents), "conversation_id", how="left")
             .join(splits.select("conversation_id", "split"), "conversation_id", how="left")
             .join(parents.select("conversation_id", F.lit(True).alias("_parent")), "conversation_id", how="left")
             .join(rejected_ids.select("conversation_id", F.lit(True).alias("_rejected")), "conversation_id",
                   how="left"))
    unassigned = F.col("split").isNull() | F.col("is_canonical").isNull()
    unrouted = ~F.col("family").isin(*routed_families) if routed_families else F.lit(True)
    reason = (F.when(unassigned, F.lit(UNASSIGNED))
              .when(unrouted, F.lit(UNROUTED))
              .when(~F.col("pii_redacted"), F.lit(UNREDACTED))
              .when(F.col("_parent").isNotNull(), F.lit(EXTRACTED_PARENT))
              .when(~F.col("is_canonical"), F.lit(NON_CANONICAL)))
    return (flags.withColumn("exclude_reason", reason)
            .withColumn("has_rejected_text", F.col("_rejected").isNotNull())
            .drop("_parent", "_rejected"))


def conversation_records(classified: DataFrame, curriculum: DataFrame) -> DataFrame:
    """Kept conversations routed to their phase A/B stages: one row per (conversation, stage)."""
    stages = (curriculum.where(F.col("phase").isin(cur.PHASE_PRETRAIN, cur.PHASE_SFT))
              .select("family", "phase", "stage"))
    kept = classified.where(F.col("exclude_reason").isNull())
    routed = kept.join(stages, "family", how="inner")
    rejected_in_sft = (F.col("phase") == cur.PHASE_SFT) & F.col("has_rejected_text")
    return routed.where(~rejected_in_sft).select("phase", "stage", *CONVERSATION_COLUMNS)


def pair_curriculum_family(family: Column, strategy: Column) -> Column:
    """A pair's curriculum family: its own family when it is a preference family, else from its strategy."""
    by_strategy = F.lit(None).cast("string")
    for name, fam in sorted(cur.STRATEGY_FAMILY.items()):
        by_strategy = F.when(strategy == name, F.lit(fam)).otherwise(by_strategy)
    return F.when(family.isin(*sorted(cur.PAIR_FAMILIES)), family).otherwise(by_strategy)


def pair_records(pairs: DataFrame, curriculum: DataFrame) -> DataFrame:
    """Preference pairs routed to their phase C stage, family = curriculum family, prompt_family kept."""
    stages = curriculum.where(F.col("phase") == cur.PHASE_PREFERENCE).select("family", "phase", "stage")
    routed = pairs.select(
        "*", F.col("family").alias("prompt_family"),
    ).withColumn("family", pair_curriculum_family(F.col("family"), F.col("strategy")))
    return routed.join(stages, "family", how="inner").select("phase", "stage", *PAIR_COLUMNS)


def sorted_for_export(df: DataFrame, key: str, tiebreak: Column) -> DataFrame:
    """Total order: phase, stage, split, stable id, then a content digest for any duplicate id."""
    return df.withColumn("_tiebreak", tiebreak).orderBy("phase", "stage", "split", key, "_tiebreak").drop("_tiebreak")


# ----------------------------------------------------------------------------------------------------------------
# Driver side: pinned reads, shard writing, manifest, staging folder.


def pin_versions(spark: SparkSession, cfg: Config, versions: dict | None) -> dict[str, int]:
    """The version to read for each input table: given ones (all required), else each table's current one."""
    if versions is not None:
        missing = sorted(set(INPUT_TABLES) - set(versions))
        if missing:
            raise ValueError(f"export: versions given without {', '.join(missing)}; pass every input table's version")
        return {name: int(versions[name]) for name in INPUT_TABLES}
    out = {}
    for name, stage in INPUT_TABLES.items():
        version = delta.current_version(spark, cfg.table_path(name))
        if version is None:
            raise RuntimeError(f"export: table {name} does not exist under lake_root; run the `{stage}` stage first")
        out[name] = version
    return out


LINE_BUILDERS = {cur.PHASE_PRETRAIN: records.text_record, cur.PHASE_SFT: records.sft_record,
                 cur.PHASE_PREFERENCE: records.preference_record}


def _rows(df: DataFrame) -> Iterator[tuple]:
    """(phase, stage, split, family, line) in the DataFrame's order, one partition on the driver at a time."""
    for row in df.toLocalIterator():
        line = records.to_line(LINE_BUILDERS[row["phase"]](row))
        yield row["phase"], row["stage"], row["split"], row["family"], line


def _record_rows(conv_records: DataFrame, pairs: DataFrame) -> Iterator[tuple]:
    """All export rows: phases A and B (one sorted pass), then phase C; groups come out consecutive."""
    yield from _rows(sorted_for_export(conv_records, "conversation_id", F.col("content_hash")))
    pair_digest = F.sha2(F.to_json(F.struct("prompt", "chosen", "rejected", "strategy")), 256)
    yield from _rows(sorted_for_export(pairs, "pair_id", pair_digest))


def _excluded(classified: DataFrame, sft_families: list[str]) -> dict[str, dict[str, int]]:
    """{family: {reason: conversations}}; rejected_text_sft counts those left out of phase B only."""
    sft_only = (F.col("exclude_reason").isNull() & F.col("has_rejected_text")
                & F.col("family").isin(*sft_families)) if sft_families else F.lit(False)
    reason = F.coalesce(F.col("exclude_reason"), F.when(sft_only, F.lit(REJECTED_TEXT)))
    rows = (classified.select("family", reason.alias("exclude_reason")).where(F.col("exclude_reason").isNotNull())
            .groupBy("family", "exclude_reason").count().collect())
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["family"], {})[r["exclude_reason"]] = int(r["count"])
    return out


def _check_assigned(excluded: dict[str, dict[str, int]]) -> None:
    unassigned = {fam: n[UNASSIGNED] for fam, n in excluded.items() if n.get(UNASSIGNED)}
    if unassigned:
        raise RuntimeError(f"export: {sum(unassigned.values())} conversations ({unassigned}) have no row in "
                           "dup_clusters or splits at the pinned versions; re-run dedup and splits, then export")


def _staging_dirs(cfg: Config, run_id: str) -> tuple[Path, Path, Path]:
    if is_s3(cfg.release_dir):
        raise ConfigError("release_dir: must be a local folder (upload sends it to release_uri); got an s3:// URI")
    final = Path(cfg.release_dir)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in run_id)
    return final, final.with_name(f"{final.name}.staging-{safe}"), final.with_name(f"{final.name}.old-{safe}")


def publish(staging: Path, final: Path, old: Path) -> None:
    """Move a complete staging folder into place; the previous release is moved aside, then removed.

    A crash between the two renames leaves no release_dir but the previous release intact in `*.old-*`.
    """
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    staging.rename(final)
    for leftover in final.parent.glob(f"{final.name}.old-*"):  # this run's, or one a crash left behind
        shutil.rmtree(leftover, ignore_errors=True)


def _tables(spark: SparkSession, cfg: Config, pinned: dict[str, int]) -> list[dict]:
    return [mf.table_entry(name, version, delta.history(spark, cfg.table_path(name), up_to_version=version))
            for name, version in pinned.items()]


def export_release(spark: SparkSession, cfg: Config, run_id: str, versions: dict | None = None) -> dict:
    """Export the release from pinned table versions (current ones by default) and return its manifest."""
    pinned = pin_versions(spark, cfg, versions)
    curriculum_conf = cur.load_curriculum(cfg)
    read = {name: delta.read_table(spark, cfg, name, version=v) for name, v in pinned.items()}
    conv, pairs, cur_table = read[CONVERSATIONS], read[PREFERENCE_PAIRS], read[CURRICULUM]
    routes = cur_table.select("family", "phase").distinct().collect()
    routed = sorted({r["family"] for r in routes if r["phase"] != cur.PHASE_PREFERENCE})
    sft_families = sorted({r["family"] for r in routes if r["phase"] == cur.PHASE_SFT})
    rejected_ids = conversations_with_rejected_text(conv, pairs)
    classified = classify_conversations(conv, read[DUP_CLUSTERS], read[SPLITS], extracted_parents(conv),
                                        rejected_ids, routed).persist()
    final, staging, old = _staging_dirs(cfg, run_id)
    try:
        excluded = _excluded(classified, sft_families)
        _check_assigned(excluded)
        for stale in final.parent.glob(f"{final.name}.staging-*"):  # left by a killed export: never published
            log.warning("export: removing %s, an unfinished release of an earlier run", stale)
            shutil.rmtree(stale)
        staging.mkdir(parents=True)
        crash_point("export", "during_write", RELEASE)  # inert unless ETL_TEST_KILL_AT is set (crash tests)
        rows = _record_rows(conversation_records(classified, cur_table), pair_records(pairs, cur_table))
        written, tally = shards.write_sorted(staging, rows, cfg.export.max_shard_bytes, cfg.export.compression)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        classified.unpersist()
    return _finish(spark, cfg, pinned, curriculum_conf, written, tally, excluded, (final, staging, old))


def _finish(spark: SparkSession, cfg: Config, pinned: dict, curriculum_conf: cur.Curriculum, written: list,
            tally: Counter, excluded: dict, dirs: tuple[Path, Path, Path]) -> dict:
    """Write manifest.json and croissant.json into the staging folder, then publish it."""
    final, staging, old = dirs
    try:
        config_hash = cfg.config_hash()
        release_id = cfg.release_id or mf.derive_release_id(pinned, cfg.config_hash(content_only=True),
                                                             curriculum_conf.sha256, {s.path: s.sha256 for s in written})
        cur_rows = [r.asDict() for r in delta.read_table(spark, cfg, CURRICULUM, version=pinned[CURRICULUM])
                    .orderBy("phase", "stage_order", "family").collect()]
        manifest = mf.build_manifest(
            release_id=release_id, created_at=mf.utc_now(), config_hash=config_hash,
            curriculum={**curriculum_conf.to_manifest(), "routing": cur_rows},
            shards=[s.to_dict() for s in written], counts=mf.counts_summary(tally, excluded),
            tables=_tables(spark, cfg, pinned),
            export={"max_shard_bytes": cfg.export.max_shard_bytes, "compression": cfg.export.compression,
                    "layout": "<phase>/<stage>/<split>-NNNNN-of-MMMMM" + shards.EXTENSIONS[cfg.export.compression],
                    "order": "phase, stage, split, conversation_id | pair_id"})
        mf.write_json(staging / mf.MANIFEST_NAME, manifest)
        mf.write_json(staging / mf.CROISSANT_NAME, croissant.build_croissant(manifest))
        publish(staging, final, old)
        crash_point("export", "after_write", RELEASE)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Export the release at the tables' current versions; counts per phase and the shard count."""
    manifest = export_release(spark, cfg, run_id)
    counts = manifest["counts"]
    for s in manifest["shards"]:
        log.info("shard %s: %d records, %d bytes", s["path"], s["records"], s["bytes"])
    log.info("release %s: %d records in %d shards; excluded %s", manifest["release_id"], counts["records"],
             len(manifest["shards"]), counts["excluded"])
    return {"release_id": manifest["release_id"], "records": counts["records"], "shards": len(manifest["shards"]),
            "by_phase": counts["by_phase"], "excluded": counts["excluded"],
            "tables": {t["name"]: t["version"] for t in manifest["tables"]}}
