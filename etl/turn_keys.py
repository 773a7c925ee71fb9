"""Turn keys of conversations, hashed once per content and kept in `lake.turn_keys`.

The splits stage and the preference-pair hygiene need the hash of the first user turn and of every assistant turn
of every conversation. Hashing means canonicalising every message in Python (at 100k, 35 s of executor time in
splits and 18 s in preference_pairs, redone on every rerun). The keys are a pure function of the canonical
messages, which the conversation's `content_hash` names, so they are stored per content hash (under a digest of the
code that computes them) and a rerun hashes only contents it has not seen. The leakage gate does not use them: it
hashes the lake and the release itself, so a release is checked independently of any stored state.

A stored row keeps, for the first user turn and for each distinct assistant turn, its text hash, its canonical
length and whether it consists only of filler words (`etl.leakage.filler_only`). Whether a turn is trivial
depends on `splits.min_informative_chars`, so it is decided when the keys are read (`informative`), and the same
rows serve any setting. `with_turn_hashes` gives exactly the columns `etl.leakage.with_turn_hashes` computes
(tests/test_turn_keys.py compares them).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Iterator

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from etl import contract, leakage
from etl.code_digest import source_digest
from etl.config import Config
from etl.io import memo
from etl.schemas import ROLE_ASSISTANT, ROLE_USER, TURN_KEYS, TURN_KEYS_SCHEMA

log = logging.getLogger(__name__)

CONTENT_KEY = "content_hash"  # the memo's key: the keys are a pure function of the content this hash names
KEY_COLUMNS = (memo.DIGEST, CONTENT_KEY)  # one stored row per content and code digest


def code_digest() -> str:
    """Digest of the code that turns messages into keys: canonical text, the filler rule and this module."""
    return source_digest(contract, leakage.filler_only, sys.modules[__name__])


def turn_key(text: str) -> dict:
    """{hash, chars, filler} of one turn: sha256 and length of its canonical text, and the filler-word rule."""
    canon = contract.canonical_text(text)
    return {"hash": contract.sha256_hex(canon), "chars": len(canon), "filler": leakage.filler_only(canon)}


def keys_of(messages: list[dict]) -> tuple[dict | None, list[dict]]:
    """(key of the first user turn or None, keys of the distinct assistant turns in order of appearance)."""
    first = next((m["content"] for m in messages if m["role"] == ROLE_USER), None)
    answers: dict[str, dict] = {}
    for m in messages:
        if m["role"] == ROLE_ASSISTANT:
            key = turn_key(m["content"])
            answers.setdefault(key["hash"], key)
    return (turn_key(first) if first is not None else None), list(answers.values())


def keys_frame(pdf: pd.DataFrame, digest: str) -> pd.DataFrame:
    """pandas: (content_hash, messages_json) -> TURN_KEYS_SCHEMA rows."""
    rows = []
    for content_hash, messages in zip(pdf["content_hash"], pdf["messages_json"]):
        first, answers = keys_of(json.loads(messages) if isinstance(messages, str) else [])
        rows.append((digest, content_hash, first, answers))
    return pd.DataFrame(rows, columns=[f.name for f in TURN_KEYS_SCHEMA.fields])


def computed_keys(conv: DataFrame, digest: str) -> DataFrame:
    """Keys of the rows of `conv` (content_hash, messages), hashed in Python: one key row per input row (the memo
    passes one row per content hash)."""
    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield keys_frame(pdf, digest)

    return conv.select("content_hash", F.to_json("messages").alias("messages_json")).mapInPandas(fn, TURN_KEYS_SCHEMA)


def keys_for(spark: SparkSession, cfg: Config, conv: DataFrame, run_id: str, stage: str) -> tuple[DataFrame, dict]:
    """(digest, content_hash, first_user, answers) for every content hash of `conv`, and counts.

    A memo (`etl.io.memo.recalled`, keyed by content hash): stored rows are reused, the missing contents are
    hashed now and merged into lake.turn_keys. When that merge fails, the stage keeps the keys it hashed and the
    warning names the table; the next run hashes them again. The returned frame is cached: unpersist it when done.
    """
    digest = code_digest()
    inputs = conv.select(CONTENT_KEY, "messages")
    with memo.recalled(spark, cfg, TURN_KEYS, digest, inputs, lambda missing: computed_keys(missing, digest),
                       run_id, stage, key=CONTENT_KEY) as (rows, n_new):
        keys = rows.persist()
        n_keys = keys.count()
    log.info("turn keys: %d contents, %d hashed now, %d from lake.turn_keys", n_keys, n_new, n_keys - n_new)
    return keys, {"turn_keys_hashed": n_new, "turn_keys_reused": n_keys - n_new}


def informative(key: Column, min_chars: int) -> Column:
    """The key's hash, or null when its turn is trivial (shorter than min_chars, or filler words only)."""
    return F.when(key.isNotNull() & (key["chars"] >= F.lit(min_chars)) & ~key["filler"], key["hash"])


def hash_columns(keys: DataFrame, min_chars: int) -> DataFrame:
    """(content_hash, prompt_hash, answer_hashes) as etl.leakage.turn_hashes defines them."""
    answers = F.array_sort(F.filter(F.transform("answers", lambda k: informative(k, min_chars)),
                                    lambda h: h.isNotNull()))
    return keys.select("content_hash", informative(F.col("first_user"), min_chars).alias(leakage.PROMPT_HASH),
                       answers.alias(leakage.ANSWER_HASHES))


def with_turn_hashes(conv: DataFrame, keys: DataFrame, min_chars: int) -> DataFrame:
    """`conv` plus prompt_hash and answer_hashes from `keys` (keys_for): the columns of leakage.with_turn_hashes."""
    joined = conv.join(hash_columns(keys, min_chars), "content_hash", "left")
    return joined.withColumn(leakage.ANSWER_HASHES,
                             F.coalesce(leakage.ANSWER_HASHES, F.array().cast("array<string>")))


def assistant_hashes(keys: DataFrame) -> DataFrame:
    """Distinct text_hash of every assistant turn (trivial ones included), as hygiene.assistant_turn_hashes."""
    return keys.select(F.explode("answers").alias("k")).select(F.col("k.hash").alias("text_hash")).distinct()

