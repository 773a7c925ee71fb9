"""One JSON object per exported record, as bytes: plain Python over Spark Rows or dicts (no Spark needed).

Key order is fixed here and `json.dumps` is called with fixed separators, so equal rows give equal bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from etl.contract import text_hash
from etl.schemas import ROLE_ASSISTANT

# Phase A renders a conversation as text with these speaker labels, turns separated by a blank line.
ROLE_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}
TURN_SEPARATOR = "\n\n"

# Conversation columns copied into each record's metadata, in this order (provenance for the verify gates).
CONVERSATION_METADATA = ("conversation_id", "family", "split", "topic", "content_hash", "source_uri",
                         "source_etag", "source_locator", "parent_id")
PAIR_METADATA = ("pair_id", "family", "prompt_family", "split", "strategy", "margin", "chosen_score",
                 "rejected_score", "source_conversation_ids")


def messages_list(messages: Any) -> list[dict]:
    """Spark Rows or dicts -> [{"role", "content"}] in order."""
    return [{"role": m["role"], "content": m["content"]} for m in (messages or [])]


def render_text(messages: Any) -> str:
    """A conversation as pretraining text: `Label: content` per turn, blank line between turns."""
    return TURN_SEPARATOR.join(f"{ROLE_LABELS.get(m['role'], m['role'])}: {m['content']}" for m in messages or [])


def _metadata(row: Mapping, keys: tuple[str, ...]) -> dict:
    out = {}
    for key in keys:
        value = row[key]
        if isinstance(value, (list, tuple)):
            value = list(value)
        elif isinstance(value, float) and not math.isfinite(value):
            value = None  # JSON has no NaN/Infinity
        out[key] = value
    return out


def text_record(row: Mapping) -> dict:
    """Phase A: {"text": ..., "metadata": {...}}."""
    return {"text": render_text(row["messages"]), "metadata": _metadata(row, CONVERSATION_METADATA)}


def sft_record(row: Mapping) -> dict:
    """Phase B: {"messages": [...], "metadata": {...}} (ChatML)."""
    return {"messages": messages_list(row["messages"]), "metadata": _metadata(row, CONVERSATION_METADATA)}


def preference_record(row: Mapping) -> dict:
    """Phase C: TRL conversational preference format {"prompt", "chosen", "rejected"} plus metadata."""
    return {
        "prompt": messages_list(row["prompt"]),
        "chosen": messages_list(row["chosen"]),
        "rejected": messages_list(row["rejected"]),
        "metadata": _metadata(row, PAIR_METADATA),
    }


def to_line(record: dict) -> bytes:
    """Compact UTF-8 JSON line; a text that cannot be UTF-8 encoded is written with \\u escapes instead."""
    try:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(record, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


def assistant_text_hashes(pdf: pd.DataFrame) -> pd.DataFrame:
    """(id, text_hash) per assistant turn of `messages_json`, text_hash = contract.text_hash (canonical text).

    The key that matches a preference pair's rejected text to an SFT assistant turn, as the verify gate does.
    """
    rows = []
    for key, raw in zip(pdf["id"], pdf["messages_json"]):
        for m in json.loads(raw) if raw else []:
            if m.get("role") == ROLE_ASSISTANT and m.get("content"):
                rows.append((key, text_hash(m["content"])))
    return pd.DataFrame(rows, columns=["id", "text_hash"])
