"""Row helpers shared by the preference strategies: Arrow cells as Python values, prompt split, pair rows."""

from __future__ import annotations

import hashlib
import math

import pandas as pd

from etl.contract import canonical_text
from etl.generators.synthetic import derive_seed
from pyspark.sql.types import StringType, StructType

from etl.schemas import PREFERENCE_PAIRS_SCHEMA, ROLE_ASSISTANT

PAIR_COLUMNS = [f.name for f in PREFERENCE_PAIRS_SCHEMA.fields]


def as_dict(value) -> dict:
    """A Spark map cell as a dict (Arrow hands maps to pandas as lists of (key, value) pairs)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    return dict(value) if not isinstance(value, dict) else value


def as_messages(value) -> list[dict]:
    """An array<struct<role, content>> cell as a list of {role, content} dicts."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [{"role": m["role"], "content": m["content"]} for m in list(value)]


def split_prompt(messages: list[dict]) -> tuple[list[dict], dict | None]:
    """(turns before the first assistant turn, that assistant turn); (messages, None) when there is none."""
    for i, m in enumerate(messages):
        if m["role"] == ROLE_ASSISTANT:
            return messages[:i], m
    return messages, None


def pair_id(strategy: str, source_ids: list[str], seed: int, variant: str = "") -> str:
    """Stable pair id: sha256 of (strategy, source conversation ids, seed, variant), 32 hex chars."""
    blob = "\x1f".join([strategy, *source_ids, str(seed), variant])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def score_of(value) -> float | None:
    """A quality score cell as float, None for null / NaN."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def split_of(value) -> str | None:
    """A split cell as str, None when missing."""
    return value if isinstance(value, str) and value else None


def make_pair(strategy: str, prompt: list[dict], chosen: str, rejected: str, source_ids: list[str], family: str,
              split: str, seed: int, variant: str = "", chosen_score=None, rejected_score=None) -> dict:
    """One row of PREFERENCE_PAIRS_SCHEMA; margin = chosen_score - rejected_score when both are known."""
    margin = None if chosen_score is None or rejected_score is None else chosen_score - rejected_score
    return {
        "pair_id": pair_id(strategy, source_ids, seed, variant), "prompt": prompt,
        "chosen": [{"role": ROLE_ASSISTANT, "content": chosen}],
        "rejected": [{"role": ROLE_ASSISTANT, "content": rejected}],
        "strategy": strategy, "margin": margin, "chosen_score": chosen_score, "rejected_score": rejected_score,
        "source_conversation_ids": list(source_ids), "family": family, "split": split,
    }


def to_frame(pairs: list[dict]) -> pd.DataFrame:
    """Pair rows as a DataFrame with exactly the PREFERENCE_PAIRS_SCHEMA columns (also when empty)."""
    return pd.DataFrame(pairs, columns=PAIR_COLUMNS)


def same_text(a: str, b: str) -> bool:
    """Equal after canonicalisation (HTML, entities, whitespace)."""
    return canonical_text(a) == canonical_text(b)


def prepared(df: pd.DataFrame, seed: int) -> list[dict]:
    """Rows with parsed messages, the prompt / first answer split, and a seed-derived tiebreak, in stable order."""
    rows = []
    for r in df.to_dict("records"):
        messages = as_messages(r.get("messages"))
        prompt, answer = split_prompt(messages)
        rows.append({**r, "messages": messages, "metadata": as_dict(r.get("metadata")), "prompt": prompt,
                     "answer": answer["content"] if answer else None, "score": score_of(r.get("quality_score")),
                     "split": split_of(r.get("split")), "tiebreak": derive_seed(seed, r["conversation_id"])})
    return sorted(rows, key=lambda r: r["conversation_id"])


def strings_as_objects(frame: pd.DataFrame, schema: StructType) -> pd.DataFrame:
    """String columns as object dtype with None for missing: an all-missing column would otherwise be float NaN,
    which Arrow cannot hand back to Spark as a string column."""
    for f in schema.fields:
        if isinstance(f.dataType, StringType) and f.name in frame:
            frame[f.name] = frame[f.name].astype(object).where(frame[f.name].notna(), None)
    return frame
