"""stats gate: turn structure and length bounds of every exported record (built-in Spark functions only).

SFT (and a pair's prompt): at least one user turn (SFT: and one assistant turn), no empty message, roles in
system/user/assistant, system only as the first turn, no two consecutive turns with the same role. Pairs: chosen
and rejected are one non-empty assistant message each and differ. Text: not empty. Every record's characters
stay within `verify.max_chars`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from etl.gates.base import GateResult, ReleaseView, contents, summarise
from etl.io.release import KIND_PREFERENCE, KIND_SFT, KIND_TEXT, KIND_UNKNOWN
from etl.schemas import ROLE_ASSISTANT, ROLE_SYSTEM, ROLE_USER, ROLES

GATE = "stats"


def _count_role(messages: Column, role: str) -> Column:
    return F.size(F.filter(messages, lambda m: m["role"] == role))


def _any_empty(messages: Column) -> Column:
    return F.exists(messages, lambda m: F.coalesce(F.trim(m["content"]), F.lit("")) == "")


def _bad_role(messages: Column) -> Column:
    return F.exists(messages, lambda m: ~F.coalesce(m["role"].isin(*ROLES), F.lit(False)))


def _late_system(messages: Column) -> Column:
    return F.exists(F.transform(messages, lambda m, i: (i > 0) & (m["role"] == ROLE_SYSTEM)), lambda b: b)


def _repeated_role(messages: Column) -> Column:
    """Two consecutive turns with the same role (element_at is 1-based, so element i is the previous turn)."""
    same = F.transform(messages, lambda m, i: F.when(i > 0, F.element_at(messages, i)["role"] == m["role"])
                       .otherwise(F.lit(False)))
    return F.exists(same, lambda b: b)


def _single_assistant(messages: Column) -> Column:
    only = F.element_at(messages, 1)
    return ((F.size(messages) == 1) & (only["role"] == ROLE_ASSISTANT)
            & (F.coalesce(F.trim(only["content"]), F.lit("")) != ""))


def problem_rules(max_chars: int) -> list[tuple[str, Column]]:
    """(problem name, condition) for every rule; a condition is true when the record breaks the rule."""
    kind, msgs, prompt = F.col("kind"), F.col("messages"), F.col("prompt")
    sft, pair, text = kind == KIND_SFT, kind == KIND_PREFERENCE, kind == KIND_TEXT
    chars = (F.length(contents(msgs)) + F.length(contents(prompt)) + F.length(contents(F.col("chosen")))
             + F.length(contents(F.col("rejected"))) + F.length(F.coalesce(F.col("text"), F.lit(""))))
    return [
        ("unknown record shape", kind == KIND_UNKNOWN),
        ("no user turn", sft & (_count_role(msgs, ROLE_USER) == 0) | pair & (_count_role(prompt, ROLE_USER) == 0)),
        ("no assistant turn", sft & (_count_role(msgs, ROLE_ASSISTANT) == 0)),
        ("empty message", sft & _any_empty(msgs) | pair & _any_empty(prompt)),
        ("invalid role", sft & _bad_role(msgs) | pair & _bad_role(prompt)),
        ("system message after the first turn", sft & _late_system(msgs) | pair & _late_system(prompt)),
        ("consecutive turns with the same role", sft & _repeated_role(msgs) | pair & _repeated_role(prompt)),
        ("chosen is not one non-empty assistant message", pair & ~_single_assistant(F.col("chosen"))),
        ("rejected is not one non-empty assistant message", pair & ~_single_assistant(F.col("rejected"))),
        ("chosen equals rejected", pair & (contents(F.col("chosen")) == contents(F.col("rejected")))),
        ("empty text", text & (F.trim(F.col("text")) == "")),
        (f"longer than verify.max_chars={max_chars}", chars > max_chars),
    ]


def with_problems(records: DataFrame, max_chars: int) -> DataFrame:
    """Records + `problems` (array of the rule names each breaks; empty when the record is sound)."""
    flags = [F.when(F.coalesce(cond, F.lit(False)), F.lit(name)) for name, cond in problem_rules(max_chars)]
    return records.withColumn("problems", F.filter(F.array(*flags), lambda p: p.isNotNull()))


def check(view: ReleaseView) -> GateResult:
    """Fail when any record breaks a structure or length rule; figures count records per kind and per problem."""
    flagged = with_problems(view.records, view.cfg.verify.max_chars)
    bad = flagged.select("record_key", "shard", F.explode("problems").alias("problem"))
    by_problem, found = summarise(bad, "problem", ["shard", "record_key"], view.max_examples)
    kinds = view.records.groupBy("kind").agg(F.count(F.lit(1)).alias("n"), F.max(F.size("messages")).alias("turns_max"),
                                             F.avg(F.size("messages")).alias("turns_avg")).collect()
    sft = next((r for r in kinds if r["kind"] == KIND_SFT), None)
    figures = {"records_by_kind": {r["kind"]: int(r["n"]) for r in sorted(kinds, key=lambda r: r["kind"])},
               "problems": sum(by_problem.values()), "records_by_problem": by_problem,
               "sft_turns_avg": round(float(sft["turns_avg"]), 2) if sft else None,
               "sft_turns_max": sft["turns_max"] if sft else None, "max_chars": view.cfg.verify.max_chars}
    return GateResult(GATE, not by_problem, figures, found)
