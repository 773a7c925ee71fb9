"""Anti-leakage joins: pure DataFrame functions returning the rows that connect two different splits.

Used by the splits stage (which refuses to write a leaking table) and by the verify gates. Every check returns
rows of LEAK_SCHEMA: (check, key, conversation_id, family, split); an empty result means no leak.

Trivial turns (the rule, shared with the splits stage so grouping and checking agree):
a turn is TRIVIAL, and so never links two conversations and is never checked for leakage, when its canonical
text (contract.canonical_text: NFC, HTML removed, whitespace collapsed)
  (a) is shorter than `splits.min_informative_chars` characters (default 24), or
  (b) consists only of words from TRIVIAL_WORDS (greetings, thanks, sign-offs and pleasantries such as
      "hi", "hello there", "thanks", "thank you so much", "ok bye", "how are you doing today?",
      "is there anything else I can help you with today?", a counsellor's "Hi, I'm here to listen. What brings you
      here today?"), after case folding, treating every character
      that is not a letter or digit as a separator and dropping apostrophes ("I'm" -> "im").
Such turns carry no information about the conversation, so sharing one ("hi", a stock sign-off) is not evidence
that two conversations are related; without the rule a single "hi" would glue a whole family into one group.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from etl.contract import canonical_text, sha256_hex
from etl.schemas import ROLE_ASSISTANT, ROLE_USER

SPLIT_HOLDOUT = "holdout"
PROMPT_HASH, ANSWER_HASHES = "prompt_hash", "answer_hashes"

CHECK_CONTENT_HASH = "content_hash"
CHECK_PROMPT = "prompt_hash"
CHECK_ANSWER = "answer_hash"
CHECK_EDGE = "dup_edge"
CHECK_HOLDOUT = "holdout_family"
CHECKS = (CHECK_CONTENT_HASH, CHECK_PROMPT, CHECK_ANSWER, CHECK_EDGE, CHECK_HOLDOUT)

LEAK_SCHEMA = StructType([
    StructField("check", StringType(), False),
    StructField("key", StringType(), False),
    StructField("conversation_id", StringType(), False),
    StructField("family", StringType(), True),
    StructField("split", StringType(), True),
])

TURN_HASHES_SCHEMA = StructType([
    StructField("conversation_id", StringType(), False),
    StructField(PROMPT_HASH, StringType(), True),
    StructField(ANSWER_HASHES, ArrayType(StringType(), False), False),
])

# Greetings, thanks, sign-offs and pleasantries: a turn made only of these words says nothing about the conversation.
TRIVIAL_WORDS = frozenset("""
    hi hii hey heya hello hellow helo hiya howdy yo greetings there everyone all
    good morning afternoon evening night day nice great fine well ok okay k kk alright sure yes yeah yep no nope
    thanks thank thankyou thx ty cheers appreciate appreciated it much so very lot a again for your
    bye goodbye byebye cya see later soon take care talk to ttyl have meet
    you u ya im i am me my we are is do doing how hows going whats what up about yourself too and
    can could may help with anything else today the youre welcome glad pleasure
    coming reaching out here listen listening brings bring been on mind would like want things chat
    """.split())  # the last line: stock counsellor openers ("Hi, thanks for reaching out. What's been on your mind?")

_WORD = re.compile(r"[^\W_]+")


def is_trivial(text: str, min_chars: int) -> bool:
    """True when a canonical text carries no information: too short, or only greetings/thanks/sign-offs."""
    return len(text) < min_chars or filler_only(text)


def filler_only(text: str) -> bool:
    """True when a canonical text has no word outside TRIVIAL_WORDS (rule (b) above; no words at all counts)."""
    words = _WORD.finditer(text.casefold().replace("'", "").replace("\u2019", ""))
    return all(w.group() in TRIVIAL_WORDS for w in words)  # stops at the first informative word


def informative_hash(text: str, min_chars: int) -> str | None:
    """text_hash of a turn (sha256 of its canonical text), or None when the turn is trivial."""
    canon = canonical_text(text)
    return None if is_trivial(canon, min_chars) else sha256_hex(canon)


def turn_hashes(messages: list[dict], min_chars: int) -> tuple[str | None, list[str]]:
    """(hash of the first user turn, sorted distinct hashes of the assistant turns), trivial turns left out."""
    prompt = next((m["content"] for m in messages if m["role"] == ROLE_USER), "")
    answers = {informative_hash(m["content"], min_chars) for m in messages if m["role"] == ROLE_ASSISTANT}
    return informative_hash(prompt, min_chars), sorted(h for h in answers if h is not None)


def turn_hashes_frame(pdf: pd.DataFrame, min_chars: int) -> pd.DataFrame:
    """pandas: (conversation_id, messages_json) -> (conversation_id, prompt_hash, answer_hashes)."""
    out = [(cid, *turn_hashes(json.loads(msgs), min_chars))
           for cid, msgs in zip(pdf["conversation_id"], pdf["messages_json"])]
    return pd.DataFrame(out, columns=[f.name for f in TURN_HASHES_SCHEMA.fields])


def with_turn_hashes(conv: DataFrame, min_chars: int) -> DataFrame:
    """conversations + prompt_hash (first user turn) and answer_hashes (assistant turns), trivial turns exempt."""
    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield turn_hashes_frame(pdf, min_chars)

    hashes = (conv.select("conversation_id", F.to_json("messages").alias("messages_json"))
              .mapInPandas(fn, TURN_HASHES_SCHEMA))
    return conv.join(hashes, on="conversation_id", how="left")


def _keyed(conv: DataFrame, min_chars: int) -> DataFrame:
    """Reuse hash columns the caller already computed (the splits stage), else compute them."""
    return conv if {PROMPT_HASH, ANSWER_HASHES} <= set(conv.columns) else with_turn_hashes(conv, min_chars)


def _assigned(conv: DataFrame, splits: DataFrame) -> DataFrame:
    return conv.join(splits.select("conversation_id", "split"), on="conversation_id", how="inner")


def _key_rows(keyed: DataFrame, checks: tuple[str, ...]) -> DataFrame:
    """(check, key, conversation_id, family) for the hash keys of `checks` (content, prompt, answer)."""
    exprs = {
        CHECK_CONTENT_HASH: F.array(F.struct(F.lit(CHECK_CONTENT_HASH).alias("check"),
                                             F.col("content_hash").alias("key"))),
        CHECK_PROMPT: F.array(F.struct(F.lit(CHECK_PROMPT).alias("check"), F.col(PROMPT_HASH).alias("key"))),
        CHECK_ANSWER: F.transform(F.coalesce(ANSWER_HASHES, F.array().cast("array<string>")),
                                  lambda h: F.struct(F.lit(CHECK_ANSWER).alias("check"), h.alias("key"))),
    }
    keys = F.concat(*[exprs[c] for c in checks]) if len(checks) > 1 else exprs[checks[0]]
    return (keyed.select("conversation_id", "family", F.explode(keys).alias("k"))
            .select("k.check", "k.key", "conversation_id", "family").where(F.col("key").isNotNull()))


def _straddling(keyed: DataFrame, splits: DataFrame, checks: tuple[str, ...]) -> DataFrame:
    """Rows whose key (per check) occurs in more than one split: one shuffle for all checks."""
    rows = _assigned(_key_rows(keyed, checks), splits)
    per_key = Window.partitionBy("check", "key")
    return (rows.withColumn("n_splits", F.size(F.collect_set("split").over(per_key)))
            .where(F.col("n_splits") > 1).select("check", "key", "conversation_id", "family", "split"))


def content_hash_leaks(conv: DataFrame, splits: DataFrame) -> DataFrame:
    """Conversations whose content_hash also appears in another split."""
    return _straddling(conv, splits, (CHECK_CONTENT_HASH,))


def prompt_leaks(conv: DataFrame, splits: DataFrame, min_chars: int) -> DataFrame:
    """Conversations whose non-trivial first user turn also opens a conversation in another split."""
    return _straddling(_keyed(conv, min_chars), splits, (CHECK_PROMPT,))


def answer_leaks(conv: DataFrame, splits: DataFrame, min_chars: int) -> DataFrame:
    """Conversations sharing a non-trivial assistant turn with a conversation in another split."""
    return _straddling(_keyed(conv, min_chars), splits, (CHECK_ANSWER,))


def edge_leaks(edges: DataFrame, splits: DataFrame) -> DataFrame:
    """Both ends of every verified dup edge whose ends are in different splits."""
    side = splits.select("conversation_id", "family", "split")
    a = side.select(F.col("conversation_id").alias("conversation_id_a"), F.col("family").alias("family_a"),
                    F.col("split").alias("split_a"))
    b = side.select(F.col("conversation_id").alias("conversation_id_b"), F.col("family").alias("family_b"),
                    F.col("split").alias("split_b"))
    crossing = (edges.select("conversation_id_a", "conversation_id_b", "kind")
                .join(a, on="conversation_id_a", how="inner").join(b, on="conversation_id_b", how="inner")
                .where(F.col("split_a") != F.col("split_b"))
                .withColumn("key", F.concat_ws("|", "kind", "conversation_id_a", "conversation_id_b")))
    ends = [crossing.select(F.lit(CHECK_EDGE).alias("check"), "key",
                            F.col(f"conversation_id_{s}").alias("conversation_id"),
                            F.col(f"family_{s}").alias("family"), F.col(f"split_{s}").alias("split"))
            for s in ("a", "b")]
    return ends[0].unionByName(ends[1])


def holdout_leaks(conv: DataFrame, splits: DataFrame, holdout_families) -> DataFrame:
    """Rows of holdout families that are not in split `holdout` (or have no split at all)."""
    names = sorted(holdout_families)
    rows = conv.select("conversation_id", "family").where(F.col("family").isin(names) if names else F.lit(False))
    return (rows.join(splits.select("conversation_id", "split"), on="conversation_id", how="left")
            .where(F.col("split").isNull() | (F.col("split") != SPLIT_HOLDOUT))
            .select(F.lit(CHECK_HOLDOUT).alias("check"), F.col("family").alias("key"), "conversation_id", "family",
                    F.coalesce("split", F.lit("<none>")).alias("split")))


def all_leaks(conv: DataFrame, splits: DataFrame, edges: DataFrame, min_chars: int, holdout_families) -> DataFrame:
    """Every check's offending rows in one DataFrame (LEAK_SCHEMA)."""
    keyed = _keyed(conv, min_chars)
    hashed = _straddling(keyed, splits, (CHECK_CONTENT_HASH, CHECK_PROMPT, CHECK_ANSWER))
    return (hashed.unionByName(edge_leaks(edges, splits))
            .unionByName(holdout_leaks(keyed, splits, holdout_families)))


def leakage_report(conv: DataFrame, splits: DataFrame, edges: DataFrame, min_chars: int, holdout_families,
                   max_examples: int = 5) -> dict[str, tuple[int, list[dict]]]:
    """check -> (offending keys, up to `max_examples` examples {key, rows: ["id family/split", ...]}); one job."""
    leaks = all_leaks(conv, splits, edges, min_chars, holdout_families)
    per_key = leaks.groupBy("check", "key").agg(F.sort_array(F.collect_set(
        F.concat_ws(" ", "conversation_id", F.concat_ws("/", "family", "split")))).alias("rows"))
    by_check = Window.partitionBy("check")
    top = (per_key.withColumn("n_keys", F.count(F.lit(1)).over(by_check))
           .withColumn("rn", F.row_number().over(by_check.orderBy("key")))
           .where(F.col("rn") <= max_examples).collect())
    report: dict[str, tuple[int, list[dict]]] = {check: (0, []) for check in CHECKS}
    for row in sorted(top, key=lambda r: (r["check"], r["rn"])):
        _, examples = report[row["check"]]
        report[row["check"]] = (int(row["n_keys"]), examples + [{"key": row["key"], "rows": list(row["rows"][:6])}])
    return report


def format_leaks(report: dict[str, tuple[int, list[dict]]]) -> str:
    """One line per non-empty check, naming example ids and splits."""
    parts = []
    for check, (n, examples) in report.items():
        if n:
            shown = "; ".join(f"{e['key'][:16]}: {', '.join(e['rows'])}" for e in examples[:3])
            parts.append(f"{check}: {n} key(s), e.g. {shown}")
    return " | ".join(parts)
