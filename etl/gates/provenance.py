"""provenance gate: every exported record traces back to a raw object, through table versions that exist.

- Each table the manifest lists has its pinned version in the Delta history under lake_root, and the history
  rows the manifest copied (version, operation, userMetadata) agree with that history.
- A conversation record (SFT, text) names a `conversations` row (at the pinned version) with the same family and
  content hash, whose `source_uri` is an `inventory` key or generator provenance (`generator:...`), directly
  or through its parent (windows, derived rows).
- A preference record names a `preference_pairs` row whose source conversations all trace the same way.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from etl.config import join_uri
from etl.gates.base import GateResult, ReleaseView, summarise
from etl.io import delta
from etl.io.release import KIND_PREFERENCE, KIND_SFT, KIND_TEXT, is_safe_relpath
from etl.schemas import CONVERSATIONS, INVENTORY, PREFERENCE_PAIRS

GATE = "provenance"
GENERATOR_PREFIX = "generator:"


def traced_conversations(conversations: DataFrame, inventory: DataFrame) -> DataFrame:
    """(conversation_id, traced): source is a raw object or a generator, directly or via the parent row."""
    raw = inventory.select(F.col("key").alias("source_uri")).distinct().withColumn("is_raw", F.lit(True))
    own = (conversations.select("conversation_id", "source_uri", "parent_id")
           .join(raw, on="source_uri", how="left")
           .withColumn("own_ok", F.coalesce("is_raw", F.lit(False)) | F.col("source_uri").startswith(GENERATOR_PREFIX)))
    parents = own.select(F.col("conversation_id").alias("parent_id"), F.col("own_ok").alias("parent_ok"))
    return (own.join(parents, on="parent_id", how="left")
            .select("conversation_id", (F.col("own_ok") | F.coalesce("parent_ok", F.lit(False))).alias("traced")))


def _problem(df: DataFrame, name: str) -> DataFrame:
    return df.select("record_key", "shard", F.lit(name).alias("problem"))


def conversation_problems(records: DataFrame, conversations: DataFrame, traced: DataFrame) -> DataFrame:
    """(record_key, shard, problem) for conversation records that do not trace (orphan, mismatch, untraced)."""
    recs = records.where(F.col("kind").isin(KIND_SFT, KIND_TEXT))
    conv = conversations.select("conversation_id", F.col("family").alias("lake_family"),
                                F.col("content_hash").alias("lake_hash"),
                                F.col("source_uri").alias("lake_source_uri")).join(traced, "conversation_id", "left")
    joined = recs.join(conv, on="conversation_id", how="left")
    meta_source = F.col("metadata").getItem("source_uri")
    differs: Column = ((F.col("family") != F.col("lake_family"))
                       | (F.col("content_hash") != F.col("lake_hash"))
                       | (meta_source.isNotNull() & (meta_source != F.col("lake_source_uri"))))
    orphan = joined.where(F.col("lake_family").isNull())
    found = joined.where(F.col("lake_family").isNotNull())
    return (_problem(orphan, "no conversations row")
            .unionByName(_problem(found.where(F.coalesce(differs, F.lit(True))), "differs from its conversations row"))
            .unionByName(_problem(found.where(~F.coalesce("traced", F.lit(False))), "source is not a raw object")))


def pair_problems(records: DataFrame, pairs: DataFrame, traced: DataFrame) -> DataFrame:
    """(record_key, shard, problem) for preference records without a pair row or with untraced sources."""
    recs = records.where(F.col("kind") == KIND_PREFERENCE).select(
        "record_key", "shard", F.col("metadata").getItem("pair_id").alias("pair_id"))
    joined = recs.join(pairs.select("pair_id", "source_conversation_ids", F.lit(True).alias("has_pair")),
                       on="pair_id", how="left")
    orphan = joined.where(F.col("has_pair").isNull())
    sources = (joined.where(F.col("has_pair"))
               .select("record_key", "shard", F.explode_outer("source_conversation_ids").alias("conversation_id"))
               .join(traced, on="conversation_id", how="left"))
    untraced = sources.where(~F.coalesce("traced", F.lit(False))).select("record_key", "shard").distinct()
    return _problem(orphan, "no preference_pairs row").unionByName(_problem(untraced, "source conversation untraced"))


def table_problems(view: ReleaseView) -> tuple[dict, list[dict]]:
    """(version per listed table, problems) checking the manifest's table versions against Delta history."""
    versions, problems = {}, []
    for entry in view.manifest.get("tables", []) or []:
        name, rel, version = entry.get("name"), entry.get("path"), entry.get("version")
        versions[str(name)] = version
        if not is_safe_relpath(rel):
            problems.append({"table": name, "problem": f"path {rel!r} is not relative to lake_root"})
            continue
        try:
            actual = {h["version"]: h for h in delta.history(view.spark, join_uri(view.cfg.lake_root, rel))}
        except Exception:  # noqa: BLE001 - not a Delta table (or unreadable): that is the finding
            problems.append({"table": name, "problem": f"no Delta table at lake_root/{rel}"})
            continue
        if version not in actual:
            problems.append({"table": name, "problem": f"version {version} not in Delta history"})
        for row in entry.get("history", []) or []:
            real = actual.get(row.get("version"))
            same = real is not None and all(row.get(k) == real.get(k) for k in ("operation", "userMetadata"))
            if not same:
                problems.append({"table": name, "problem": f"history row {row.get('version')} differs from Delta"})
    return versions, problems


def _required_tables(view: ReleaseView, kinds: set[str]) -> list[dict]:
    listed = {e.get("name") for e in view.manifest.get("tables", []) or []}
    need = {CONVERSATIONS} if kinds & {KIND_SFT, KIND_TEXT} else set()
    need |= {PREFERENCE_PAIRS} if KIND_PREFERENCE in kinds else set()
    return [{"table": t, "problem": "read by export but not listed in the manifest"} for t in sorted(need - listed)]


def check(view: ReleaseView) -> GateResult:
    """Fail on a record that does not trace to a raw object or a manifest table version missing from history."""
    kinds = {r["kind"] for r in view.records.select("kind").distinct().collect()}
    versions, tables = table_problems(view)
    tables += _required_tables(view, kinds)
    traced = traced_conversations(view.table(CONVERSATIONS), view.table(INVENTORY))
    problems = (conversation_problems(view.records, view.table(CONVERSATIONS), traced)
                .unionByName(pair_problems(view.records, view.table(PREFERENCE_PAIRS), traced)))
    by_problem, found = summarise(problems, "problem", ["shard", "record_key"], view.max_examples)
    figures = {"untraced_records": sum(by_problem.values()), "records_by_problem": by_problem,
               "table_problems": len(tables), "table_versions": versions}
    return GateResult(GATE, not by_problem and not tables, figures, (tables + found)[: view.max_examples])
