"""coverage gate: every required family reaches the release with at least its `min_records` records.

A record counts for the family it belongs to and for the families of the conversations it derives from (its
source conversations and their parents), so a family whose long sessions were exported as windows, or whose
transcripts became preference pairs, is still covered.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from etl.gates.base import GateResult, ReleaseView, cited_conversation_ids
from etl.schemas import CONVERSATIONS

GATE = "coverage"


def record_families(records: DataFrame, conversations: DataFrame) -> DataFrame:
    """(record_key, family) for each family a record belongs to or derives from (distinct)."""
    conv = conversations.select("conversation_id", F.col("family").alias("conv_family"), "parent_id")
    parents = conversations.select(F.col("conversation_id").alias("parent_id"), F.col("family").alias("parent_family"))
    cited = (cited_conversation_ids(records)
             .join(conv, on="conversation_id", how="left")
             .join(parents, on="parent_id", how="left"))
    own = records.select("record_key", "family")
    derived = cited.select("record_key", F.explode(F.array("conv_family", "parent_family")).alias("family"))
    return own.unionByName(derived).where(F.col("family").isNotNull()).distinct()


def family_record_counts(records: DataFrame, conversations: DataFrame) -> DataFrame:
    """(family, records): distinct exported records per family, own or derived."""
    return record_families(records, conversations).groupBy("family").agg(F.count(F.lit(1)).alias("records"))


def check(view: ReleaseView) -> GateResult:
    """Fail when a required family has fewer exported records than its `min_records`."""
    counts = {r["family"]: int(r["records"])
              for r in family_record_counts(view.records, view.table(CONVERSATIONS)).collect()}
    required = {}
    short = []
    for fam in view.cfg.families:
        if not fam.required:
            continue
        n = counts.get(fam.name, 0)
        minimum = max(fam.min_records, 1)
        required[fam.name] = {"records": n, "min_records": minimum}
        if n < minimum:
            short.append({"family": fam.name, "records": n, "min_records": minimum,
                          "problem": "missing" if n == 0 else "below min_records"})
    figures = {
        "required_families": len(required),
        "required_ok": len(required) - len(short),
        "required": required,
        "records_by_family": dict(sorted(counts.items())),
    }
    return GateResult(GATE, not short, figures, short[: view.max_examples])
