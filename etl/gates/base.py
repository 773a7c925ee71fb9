"""What every gate shares: its result type and the view of the release (records + pinned lake tables)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from etl.config import Config
from etl.io import delta

log = logging.getLogger(__name__)

SPLITS_ALLOWED = ("train", "val", "test", "holdout")
SPLIT_HOLDOUT = "holdout"


@dataclass(frozen=True)
class GateResult:
    """Verdict of one gate: pass/fail, the measured figures and a few offending examples (JSON-ready)."""

    gate: str
    passed: bool
    figures: dict
    examples: list


@dataclass
class ReleaseView:
    """The release as the gates see it: manifest, exported records and lake tables at the manifest's versions.

    `tables` holds DataFrames already read (and lets tests inject inline tables instead of Delta folders).
    """

    spark: SparkSession
    cfg: Config
    release_dir: str
    manifest: dict
    records: DataFrame
    tables: dict = field(default_factory=dict)
    run_id: str = "verify"  # names the verify run in the commits of the memo tables (etl.io.memo)
    memo_computed: dict = field(default_factory=dict)  # memo table -> rows computed now (the rest were reused)

    def pinned_version(self, name: str) -> int | None:
        """Version of `name` the manifest says export read (None when the manifest does not list it)."""
        for entry in self.manifest.get("tables", []) or []:
            if entry.get("name") == name and isinstance(entry.get("version"), int):
                return entry["version"]
        return None

    def table(self, name: str) -> DataFrame:
        """Lake table at its pinned version (latest when unpinned; empty with its schema when absent)."""
        if name not in self.tables:
            self.tables[name] = delta.read_table(self.spark, self.cfg, name, self.pinned_version(name))
        return self.tables[name]

    @property
    def max_examples(self) -> int:
        """Offending examples kept per gate (verify.max_examples)."""
        return self.cfg.verify.max_examples


def summarise(problems: DataFrame, by: str, order: list[str], limit: int) -> tuple[dict, list[dict]]:
    """({value of `by`: rows}, the first `limit` rows ordered by `by` + `order`) in one Spark job.

    Each group keeps at most `limit` rows (window row number), so a gate with millions of offending rows still
    collects only a few.
    """
    cols = [by, *order]
    group = Window.partitionBy(by)
    top = (problems.select(*problems.columns, F.count(F.lit(1)).over(group).alias("_n"),
                           F.row_number().over(group.orderBy(*order)).alias("_rn"))
           .where(F.col("_rn") <= limit).collect())
    counts = {str(r[by]): int(r["_n"]) for r in top}
    rows = sorted(top, key=lambda r: tuple("" if r[c] is None else str(r[c]) for c in cols))[:limit]
    found = [{k: v for k, v in r.asDict(recursive=True).items() if k not in ("_n", "_rn")} for r in rows]
    return dict(sorted(counts.items())), found


def cited_conversation_ids(records: DataFrame) -> DataFrame:
    """(record_key, conversation_id) for every conversation a record names: its own id and any source ids."""
    sources = F.coalesce(F.from_json(F.col("metadata").getItem("source_conversation_ids"), "array<string>"),
                         F.array().cast("array<string>"))
    ids = F.array_distinct(F.filter(F.concat(F.array(F.col("conversation_id")), sources), lambda c: c.isNotNull()))
    return records.select("record_key", F.explode(ids).alias("conversation_id"))


def contents(messages: Column) -> Column:
    """Concatenated contents of a message array (for length checks)."""
    return F.coalesce(F.array_join(F.transform(messages, lambda m: F.coalesce(m["content"], F.lit(""))), ""),
                      F.lit(""))
