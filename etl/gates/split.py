"""split gate: each record is in exactly one split, and a shard holds only records of its own split.

Checked: a record key found in shards of two splits; a record whose `metadata.split` differs from its shard's
split (or is missing); a split name outside train/val/test/holdout; a record twice in the same phase/stage; a
conversation record whose split differs from `splits` at the pinned version (a pair from `preference_pairs`);
a record of a holdout family outside the holdout split.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from etl.gates.base import (
    SPLIT_HOLDOUT,
    SPLITS_ALLOWED,
    GateResult,
    ReleaseView,
    summarise,
)
from etl.io.release import KIND_PREFERENCE
from etl.schemas import PREFERENCE_PAIRS, SPLITS

GATE = "split"


def _problem(df: DataFrame, name: str) -> DataFrame:
    return df.select("record_key", "shard", "split", F.lit(name).alias("problem"))


def in_several_splits(records: DataFrame) -> DataFrame:
    """Records whose key appears in shards of more than one split."""
    multi = (records.groupBy("record_key").agg(F.countDistinct("split").alias("n_splits"))
             .where(F.col("n_splits") > 1))
    return records.join(multi.select("record_key"), on="record_key", how="left_semi")


def duplicated_in_stage(records: DataFrame) -> DataFrame:
    """Records exported more than once in the same phase and stage."""
    dup = (records.groupBy("record_key", "phase", "stage").agg(F.count(F.lit(1)).alias("n"))
           .where(F.col("n") > 1))
    return records.join(dup.select("record_key", "phase", "stage"), on=["record_key", "phase", "stage"],
                        how="left_semi")


def lake_split_mismatches(records: DataFrame, splits: DataFrame, pairs: DataFrame) -> DataFrame:
    """Records whose shard split differs from the lake's split of their conversation (or pair)."""
    conv = (records.where(F.col("kind") != KIND_PREFERENCE)
            .join(splits.select("conversation_id", F.col("split").alias("lake_split")), "conversation_id", "inner"))
    pair = (records.where(F.col("kind") == KIND_PREFERENCE)
            .withColumn("pair_id", F.col("metadata").getItem("pair_id"))
            .join(pairs.select("pair_id", F.col("split").alias("lake_split")), "pair_id", "inner"))
    cols = ["record_key", "shard", "split", "lake_split"]
    return conv.select(*cols).unionByName(pair.select(*cols)).where(F.col("split") != F.col("lake_split"))


def split_problems(records: DataFrame, splits: DataFrame, pairs: DataFrame, holdout_families: list[str]) -> DataFrame:
    """(record_key, shard, split, problem) for every rule the records break."""
    wrong_shard = records.where(~F.coalesce(F.col("meta_split") == F.col("split"), F.lit(False)))
    unknown = records.where(~F.coalesce(F.col("split").isin(*SPLITS_ALLOWED), F.lit(False)))
    holdout = records.where(F.col("family").isin(*holdout_families) & (F.col("split") != SPLIT_HOLDOUT)) \
        if holdout_families else records.limit(0)
    return (_problem(in_several_splits(records), "in several splits")
            .unionByName(_problem(wrong_shard, "metadata.split differs from the shard's split"))
            .unionByName(_problem(unknown, "unknown split name"))
            .unionByName(_problem(duplicated_in_stage(records), "twice in one phase/stage"))
            .unionByName(_problem(lake_split_mismatches(records, splits, pairs), "differs from the lake's split"))
            .unionByName(_problem(holdout, "holdout family outside the holdout split")))


def check(view: ReleaseView) -> GateResult:
    """Fail when any record breaks a split rule; figures give records per split and problems per rule."""
    holdout = sorted(f.name for f in view.cfg.families if f.holdout)
    problems = split_problems(view.records, view.table(SPLITS), view.table(PREFERENCE_PAIRS), holdout)
    by_problem, found = summarise(problems, "problem", ["shard", "record_key"], view.max_examples)
    per_split = {r["split"]: int(r["n"]) for r in
                 view.records.groupBy("split").agg(F.count(F.lit(1)).alias("n")).collect()}
    figures = {"records_by_split": dict(sorted(per_split.items())), "problems": sum(by_problem.values()),
               "records_by_problem": by_problem}
    return GateResult(GATE, not by_problem, figures, found)
