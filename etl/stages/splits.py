"""splits: every conversation -> train / val / test / holdout, whole split groups at a time, stable across releases.

Split group: the connected component of
  - dup_edges (duplicate and related) and dup_clusters co-membership,
  - parent_id links (windows of a long session share their parent's group),
  - exact links: the same content_hash, the same first-user-turn text hash, the same assistant-turn text hash,
    where TRIVIAL turns never link (rule in etl.leakage: canonical text shorter than splits.min_informative_chars,
    or made only of greeting/thanks/sign-off words such as "hi", "thank you", "ok bye").
Group key (`split_group`): the smallest content_hash of the group: content-based, independent of ids and edge order.
Components are computed on the driver over the linked rows only (rows without any link are their own group):
the edge list holds one edge per linked row and key, small next to the conversations themselves. Groups are never
capped: a cap would let a capped link straddle two splits.

Assignment, per row, first rule that applies:
  holdout_family   the row's family has `holdout: true`                       -> holdout
  previous_release the row is in the previous release's splits table        -> its published split
  holdout_linked   its group holds a holdout-family row                       -> holdout
  inherited        its group holds published rows                             -> their majority split
  balanced         (splits.method=balanced, the default) the remaining groups are placed whole so that each
                   family's exported rows meet the ratios (etl/split_balance.py); the group's hash position u
                   orders single rows and breaks ties
  hash             (splits.method=hash) u = int(sha256(salt + "\\x00" + split_group)[:13], 16) / 16**13 in
                   [0, 1) against the cumulative ratios train, val, test.
Pure hashing misses the ratios by several points on families made of a few large groups (on the shared corpus,
counsel_chat val came out at 8.3 % for 5 %), hence the balanced default. Rows the export drops (non-canonical
duplicates, parents of extracted windows) do not count towards the ratios but still take their group's split.
A group whose published rows disagree (or a published row grouped with a holdout family) is a conflict: published
rows never move, so the conflict is a leak; the stage fails unless splits.allow_published_conflicts is true, in
which case the conflicting published rows are reported and left out of the leakage joins. Majority ties go to the
more protected split (holdout > test > val > train). Upstream split metadata (counsel_chat `upstream_split`) is
never read. After assigning, the anti-leakage joins (etl.leakage) must all be empty, else nothing is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os

import numpy as np
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from etl import turn_keys
from etl.config import Config
from etl.io import delta
from etl.leakage import ANSWER_HASHES, PROMPT_HASH, SPLIT_HOLDOUT, format_leaks, leakage_report
from etl.schemas import CONVERSATIONS, DUP_CLUSTERS, DUP_EDGES, SPLITS
from etl.split_balance import place_groups, singleton_quotas
from etl.stages.sessions import FAMILY as LONG_RUNNING_FAMILY

log = logging.getLogger(__name__)

STAGE = "splits"
SPLIT_ORDER = ("train", "val", "test")  # cumulative order of the ratios
PROTECTION = {SPLIT_HOLDOUT: 0, "test": 1, "val": 2, "train": 3}  # majority ties go to the lower value
RULE_HASH, RULE_HOLDOUT_FAMILY, RULE_HOLDOUT_LINKED = "hash", "holdout_family", "holdout_linked"
RULE_PREVIOUS, RULE_INHERITED, RULE_BALANCED = "previous_release", "inherited", "balanced"
METHODS = ("balanced", "hash")
HASH_HEX_DIGITS = 13  # 52 bits: exact in a double and in a long


def split_fraction(salt: str, group_key: str) -> float:
    """Stable position of a group in [0, 1): the Python twin of `_fraction_col`."""
    digest = hashlib.sha256(f"{salt}\x00{group_key}".encode()).hexdigest()
    return int(digest[:HASH_HEX_DIGITS], 16) / 16 ** HASH_HEX_DIGITS


def split_edges(ratios: dict) -> list[tuple[str, float]]:
    """(split, upper edge) for train and val: cumulative ratios rounded to 12 places (0.9 + 0.05 is 0.95, not more)."""
    out, edge = [], 0.0
    for name in SPLIT_ORDER[:-1]:
        edge += float(ratios[name])
        out.append((name, round(edge, 12)))
    return out


def split_for(fraction: float, ratios: dict) -> str:
    """train / val / test for a position in [0, 1) against the cumulative ratios."""
    for name, edge in split_edges(ratios):
        if fraction < edge:
            return name
    return SPLIT_ORDER[-1]


def _fraction_col(salt: str, key: F.Column) -> F.Column:
    digest = F.sha2(F.concat(F.lit(salt + "\x00"), key), 256)
    return F.conv(F.substring(digest, 1, HASH_HEX_DIGITS), 16, 10).cast("long") / float(16 ** HASH_HEX_DIGITS)


def _hash_split_col(salt: str, ratios: dict, key: F.Column) -> F.Column:
    frac = _fraction_col(salt, key)
    expr = None
    for name, edge in split_edges(ratios):
        expr = F.when(frac < edge, name) if expr is None else expr.when(frac < edge, name)
    return expr.otherwise(SPLIT_ORDER[-1])


def link_keys(keyed: DataFrame, edges: DataFrame, clusters: DataFrame) -> DataFrame:
    """Keys shared by two or more existing conversations: (key, members array<struct<conversation_id, content_hash>>).

    Every relation is a key: `c:` content_hash, `p:` first-user-turn hash, `a:` assistant-turn hash, `id:` a row's
    own id and its parent_id (so a window meets its parent), `e:` one dup edge, `k:` one dup cluster. One shuffle
    groups them all; edges and clusters naming rows that no longer exist link nothing.
    """
    row_keys = F.concat(
        F.array(F.concat(F.lit("c:"), "content_hash"), F.concat(F.lit("p:"), PROMPT_HASH),
                F.concat(F.lit("id:"), "conversation_id"), F.concat(F.lit("id:"), "parent_id")),
        F.transform(F.coalesce(ANSWER_HASHES, F.array().cast("array<string>")), lambda h: F.concat(F.lit("a:"), h)))
    own = keyed.select("conversation_id", "content_hash", F.explode(row_keys).alias("key"))
    dup = (edges.select(F.explode(F.array("conversation_id_a", "conversation_id_b")).alias("conversation_id"),
                        F.concat_ws("|", F.lit("e:"), "conversation_id_a", "conversation_id_b").alias("key"))
           .unionByName(clusters.select("conversation_id", F.concat(F.lit("k:"), "cluster_id").alias("key")))
           .join(keyed.select("conversation_id", "content_hash"), on="conversation_id", how="inner"))
    return (own.unionByName(dup.select("conversation_id", "content_hash", "key"))
            .where(F.col("key").isNotNull())
            .groupBy("key").agg(F.array_sort(F.collect_set(F.struct("conversation_id", "content_hash")))
                                .alias("members"))
            .where(F.size("members") > 1))


def component_groups(spark: SparkSession, shared_keys: DataFrame) -> tuple[DataFrame, dict]:
    """(conversation_id, split_group) for every linked row, via etl.dedup.components on the driver; + stats.

    Each shared key becomes a star of edges (first member to the others); only linked rows reach the driver.
    """
    from etl.dedup.components import connected_components

    index: dict[str, int] = {}
    hashes: list[str] = []
    src: list[int] = []
    dst: list[int] = []
    for row in shared_keys.select("members").collect():
        ids = []
        for member in row["members"]:
            cid = member["conversation_id"]
            if cid not in index:
                index[cid] = len(hashes)
                hashes.append(member["content_hash"])
            ids.append(index[cid])
        src.extend([ids[0]] * (len(ids) - 1))
        dst.extend(ids[1:])
    if not index:
        empty = spark.createDataFrame([], "conversation_id string, split_group string")
        return empty, {"linked_rows": 0, "links": 0, "linked_groups": 0}
    keys = np.array(hashes)
    labels, stats = connected_components(len(hashes), np.array(src), np.array(dst), np.ones(len(src)), keys,
                                         max_size=len(hashes))  # never capped: a capped link would straddle splits
    rows = [(cid, hashes[labels[i]]) for cid, i in index.items()]
    groups = spark.createDataFrame(rows, "conversation_id string, split_group string")
    return groups, {"linked_rows": len(hashes), "links": len(src), "linked_groups": stats["components"]}


def with_groups(keyed: DataFrame, groups: DataFrame) -> DataFrame:
    """Every row gets its split_group; unlinked rows are their own group (key: their content_hash)."""
    return (keyed.join(groups, on="conversation_id", how="left")
            .withColumn("split_group", F.coalesce("split_group", "content_hash")))


def with_export_weight(grouped: DataFrame, clusters: DataFrame) -> DataFrame:
    """+ `counted`: the export keeps the row (canonical duplicate member, not a parent of extracted windows)."""
    non_canonical = clusters.where(~F.col("is_canonical")).select("conversation_id", F.lit(True).alias("_dup"))
    parents = (grouped.where((F.col("family") == LONG_RUNNING_FAMILY) & F.col("parent_id").isNotNull())
               .select(F.col("parent_id").alias("conversation_id"), F.lit(True).alias("_parent")).distinct())
    return (grouped.join(non_canonical, on="conversation_id", how="left")
            .join(parents, on="conversation_id", how="left")
            .withColumn("counted", F.col("_dup").isNull() & F.col("_parent").isNull()).drop("_dup", "_parent"))


def balance_plan(spark: SparkSession, assigned: DataFrame, ratios: dict, max_share: float
                 ) -> tuple[DataFrame, DataFrame]:
    """Driver side of the balanced method: (split_group -> split for multi-row free groups, family quotas)."""
    free = F.col("rule") == RULE_HASH
    totals: dict[str, int] = {}
    fixed: dict[str, dict[str, int]] = {}
    for r in (assigned.where(F.col("counted") & (F.col("split") != SPLIT_HOLDOUT))
              .groupBy("family", "split", free.alias("free")).count().collect()):
        totals[r["family"]] = totals.get(r["family"], 0) + r["count"]
        if not r["free"]:
            fixed.setdefault(r["family"], {})[r["split"]] = fixed.get(r["family"], {}).get(r["split"], 0) + r["count"]
    multi = (assigned.where(free).groupBy("split_group")
             .agg(F.count(F.lit(1)).alias("rows"), F.min("u").alias("u"), F.min("split").alias("hash_split"),
                  F.collect_list(F.struct("family", F.col("counted").cast("int").alias("n"))).alias("members"))
             .where(F.col("rows") > 1).collect())
    groups = []
    for r in multi:
        counts: dict[str, int] = {}
        for m in r["members"]:
            counts[m["family"]] = counts.get(m["family"], 0) + m["n"]
        groups.append((r["split_group"], r["u"], r["hash_split"], counts))
    placed_groups, targets, placed = place_groups(groups, totals, fixed, ratios, max_share)
    quotas = singleton_quotas(targets, placed)
    plan = spark.createDataFrame(sorted(placed_groups.items()) or [], "split_group string, planned string")
    quota = spark.createDataFrame(sorted((f, q[0], q[1]) for f, q in quotas.items()) or [],
                                  "family string, q_val long, q_test long")
    return plan, quota


def apply_balance(assigned: DataFrame, plan: DataFrame, quota: DataFrame) -> DataFrame:
    """Free rows take the planned split of their group; counted single-row groups fill the quotas by rank of u."""
    free = F.col("rule") == RULE_HASH
    single = free & F.col("counted") & (F.count(F.lit(1)).over(Window.partitionBy("split_group")) == 1)
    rows = (assigned.join(plan, on="split_group", how="left").join(quota, on="family", how="left")
            .withColumn("_single", single))
    rank = F.row_number().over(Window.partitionBy("family", "_single").orderBy("u", "split_group"))
    by_rank = (F.when(rank <= F.col("q_val"), F.lit("val"))
               .when(rank <= F.col("q_val") + F.col("q_test"), F.lit("test")).otherwise(F.lit("train")))
    split = (F.when(free & F.col("planned").isNotNull(), F.col("planned"))
             .when(F.col("_single"), by_rank).otherwise(F.col("split")))
    return (rows.withColumn("split", split)
            .withColumn("rule", F.when(free, F.lit(RULE_BALANCED)).otherwise(F.col("rule")))
            .drop("planned", "q_val", "q_test", "_single"))


def _group_previous(rows: DataFrame) -> DataFrame:
    """Per group: majority published split (ties by PROTECTION) and how many distinct published splits it holds."""
    votes = rows.where(F.col("prev_split").isNotNull()).groupBy("split_group", "prev_split").count()
    protection = F.coalesce(*[F.when(F.col("prev_split") == k, F.lit(v)) for k, v in PROTECTION.items()], F.lit(9))
    ranked = Window.partitionBy("split_group").orderBy(F.desc("count"), protection, "prev_split")
    return (votes.withColumn("rn", F.row_number().over(ranked))
            .withColumn("n_published_splits", F.count(F.lit(1)).over(Window.partitionBy("split_group")))
            .where(F.col("rn") == 1)
            .select("split_group", F.col("prev_split").alias("group_prev_split"), "n_published_splits"))


def assign_splits(grouped: DataFrame, holdout_families, salt: str, ratios: dict,
                  previous: DataFrame | None = None) -> DataFrame:
    """SPLITS_SCHEMA columns by the rule table (free groups by hash) + counted, u, conflict, moved_to_holdout."""
    names = sorted(holdout_families)
    rows = grouped.select("conversation_id", "family", "split_group", "counted",
                          (F.col("family").isin(names) if names else F.lit(False)).alias("is_holdout_family"))
    if previous is not None:
        prev = previous.groupBy("conversation_id").agg(F.min("split").alias("prev_split"))
        rows = rows.join(prev, on="conversation_id", how="left")
    else:
        rows = rows.withColumn("prev_split", F.lit(None).cast("string"))
    has_holdout = rows.groupBy("split_group").agg(F.max("is_holdout_family").alias("group_has_holdout"))
    rows = (rows.join(has_holdout, on="split_group", how="left")
            .join(_group_previous(rows), on="split_group", how="left"))
    group_split = (F.when(F.col("group_has_holdout"), F.lit(SPLIT_HOLDOUT))
                   .when(F.col("group_prev_split").isNotNull(), F.col("group_prev_split"))
                   .otherwise(_hash_split_col(salt, ratios, F.col("split_group"))))
    is_published = F.col("prev_split").isNotNull()
    split = (F.when(F.col("is_holdout_family"), F.lit(SPLIT_HOLDOUT))
             .when(is_published, F.col("prev_split")).otherwise(group_split))
    rule = (F.when(F.col("is_holdout_family"), F.lit(RULE_HOLDOUT_FAMILY))
            .when(is_published, F.lit(RULE_PREVIOUS))
            .when(F.col("group_has_holdout"), F.lit(RULE_HOLDOUT_LINKED))
            .when(F.col("group_prev_split").isNotNull(), F.lit(RULE_INHERITED))
            .otherwise(F.lit(RULE_HASH)))
    return (rows.withColumn("group_split", group_split)
            .select("conversation_id", "family", "split_group", split.alias("split"), rule.alias("rule"), "counted",
                    _fraction_col(salt, F.col("split_group")).alias("u"),
                    (is_published & ~F.col("is_holdout_family") & (F.col("prev_split") != F.col("group_split")))
                    .alias("conflict"),
                    (is_published & F.col("is_holdout_family") & (F.col("prev_split") != SPLIT_HOLDOUT))
                    .alias("moved_to_holdout")))


def read_previous(spark: SparkSession, cfg: Config) -> DataFrame | None:
    """The previous release's splits table (cfg.splits.previous_table at previous_version), or None when unset."""
    path = cfg.splits.previous_table
    if not path:
        return None
    if not delta.table_exists(spark, path):
        raise ValueError(f"splits.previous_table: {path} is not a Delta table; point it at the published splits "
                         "table or leave it empty for a first release")
    prev_cfg = dataclasses.replace(cfg, lake_root=os.path.dirname(path.rstrip("/")))
    version = None if cfg.splits.previous_version < 0 else cfg.splits.previous_version
    prev = delta.read_table(spark, prev_cfg, os.path.basename(path.rstrip("/")), version)
    missing = {"conversation_id", "split"} - set(prev.columns)
    if missing:
        raise ValueError(f"splits.previous_table: {path} lacks columns {sorted(missing)}; it is not a splits table")
    return prev.select("conversation_id", "split")


def holdout_families(cfg: Config) -> list[str]:
    return sorted(f.name for f in cfg.families if f.holdout)


def _summaries(assigned: DataFrame, top: int) -> dict:
    """Counts by family x split, by rule, conflicts, and the largest groups (two jobs)."""
    by_family: dict = {}
    by_rule: dict = {}
    conflicts = moved = 0
    for r in (assigned.groupBy("family", "split", "rule")
              .agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("conflict").cast("int")).alias("conflicts"),
                   F.sum(F.col("moved_to_holdout").cast("int")).alias("moved")).collect()):
        by_family.setdefault(r["family"], {})
        by_family[r["family"]][r["split"]] = by_family[r["family"]].get(r["split"], 0) + r["n"]
        by_rule[r["rule"]] = by_rule.get(r["rule"], 0) + r["n"]
        conflicts += r["conflicts"] or 0
        moved += r["moved"] or 0
    groups = (assigned.groupBy("split_group")
              .agg(F.count(F.lit(1)).alias("rows"), F.sort_array(F.collect_set("family")).alias("families"),
                   F.sort_array(F.collect_set("split")).alias("splits"), F.max("conflict").alias("conflict")))
    ranked = Window.orderBy(F.desc("rows"), "split_group")
    top_rows = (groups.withColumn("n_groups", F.count(F.lit(1)).over(Window.partitionBy()))
                .withColumn("conflict_groups", F.sum(F.col("conflict").cast("int")).over(Window.partitionBy()))
                .withColumn("rank", F.row_number().over(ranked)).where(F.col("rank") <= top).collect())
    return {
        "rows": sum(by_rule.values()), "groups": top_rows[0]["n_groups"] if top_rows else 0,
        "by_family": by_family, "by_rule": by_rule, "published_conflicts": int(conflicts),
        "conflict_groups": int(top_rows[0]["conflict_groups"] or 0) if top_rows else 0,
        "published_moved_to_holdout": int(moved),
        "largest_groups": [{"split_group": r["split_group"], "rows": r["rows"], "families": list(r["families"]),
                            "splits": list(r["splits"])} for r in sorted(top_rows, key=lambda r: r["rank"])],
    }


def format_split_counts(by_family: dict) -> str:
    names = list(SPLIT_ORDER) + [SPLIT_HOLDOUT]
    lines = [f"{'family':<26}" + "".join(f"{n:>9}" for n in names) + f"{'train%':>8}{'val%':>7}{'test%':>7}"]
    for fam in sorted(by_family):
        c = by_family[fam]
        total = sum(c.get(n, 0) for n in SPLIT_ORDER) or 1
        pct = "".join(f"{100 * c.get(n, 0) / total:>{w}.1f}" for n, w in zip(SPLIT_ORDER, (8, 7, 7)))
        lines.append(f"{fam:<26}" + "".join(f"{c.get(n, 0):>9}" for n in names) + pct)
    return "\n".join(lines)


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Group, assign, prove leak-free with the anti-leakage joins, then write `splits` (whole table)."""
    conf = cfg.splits
    if conf.method not in METHODS:
        raise ValueError(f"splits.method: {conf.method!r} is not one of {', '.join(METHODS)}")
    if not delta.table_exists(spark, cfg.table_path(CONVERSATIONS)):
        raise RuntimeError(f"splits: no conversations table at {cfg.table_path(CONVERSATIONS)}; run ingest first")
    conv = delta.read_table(spark, cfg, CONVERSATIONS).select(
        "conversation_id", "family", "content_hash", "parent_id", "messages")
    edges = delta.read_table(spark, cfg, DUP_EDGES)
    clusters = delta.read_table(spark, cfg, DUP_CLUSTERS)
    holdout = holdout_families(cfg)
    keys, key_counts = turn_keys.keys_for(spark, cfg, conv, run_id, STAGE)
    keyed = turn_keys.with_turn_hashes(conv, keys, conf.min_informative_chars).drop("messages").persist()
    assigned = hashed = None
    try:
        groups, link_stats = component_groups(spark, link_keys(keyed, edges, clusters))
        previous = read_previous(spark, cfg)
        grouped = with_export_weight(with_groups(keyed, groups), clusters)
        assigned = assign_splits(grouped, holdout, conf.salt, conf.ratios, previous).persist()
        if conf.method == "balanced":
            plan, quota = balance_plan(spark, assigned, conf.ratios, conf.max_group_share)
            hashed, assigned = assigned, apply_balance(assigned, plan, quota).persist()
        summary = _summaries(assigned, conf.report_groups)
        if not summary["rows"]:
            raise RuntimeError(f"splits: {cfg.table_path(CONVERSATIONS)} has no rows; run ingest first")
        present = set(summary["by_family"])
        empty_holdout = [f for f in holdout if f not in present]
        for fam in empty_holdout:
            log.warning("splits: family %s is flagged holdout but has no rows in conversations; nothing to hold out",
                        fam)
        checked = assigned.where(~F.col("conflict")) if conf.allow_published_conflicts else assigned
        report = leakage_report(keyed, checked, edges, conf.min_informative_chars, holdout)
        leaks = {check: n for check, (n, _) in report.items()}
        if any(leaks.values()):
            hint = (f" {summary['published_conflicts']} published row(s) in {summary['conflict_groups']} group(s) "
                    "disagree with their group's split; set splits.allow_published_conflicts=true to keep them and "
                    "report them" if summary["published_conflicts"] and not conf.allow_published_conflicts else "")
            raise RuntimeError(f"splits: anti-leakage joins are not empty, splits table not written: "
                               f"{format_leaks(report)}.{hint}")
        result = delta.write_table(assigned, cfg, SPLITS, run_id, STAGE)
    finally:
        for frame in (keys, keyed, assigned, hashed):
            if frame is not None:
                frame.unpersist()
    log.info("splits per family:\n%s", format_split_counts(summary["by_family"]))
    log.info("splits: largest groups %s", summary["largest_groups"][:5])
    return {**summary, **link_stats, **key_counts, "holdout_families": holdout,
            "holdout_families_without_rows": empty_holdout, "leaks": leaks, "changed": result.changed,
            "version": result.version}
