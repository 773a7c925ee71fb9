"""Shared builders of the preference tests (test_preference.py: the strategies; test_preference_hygiene.py: pair
hygiene, the Spark stage and the export format)."""

from __future__ import annotations

import json

from etl.generators.templates import parse_templates
from etl.schemas import PREFERENCE_PAIRS_SCHEMA

PAIR_COLUMNS = [f.name for f in PREFERENCE_PAIRS_SCHEMA.fields]
LONG_ANSWER = ("It sounds like you have been carrying this worry for a long time, and it makes sense that you feel "
               "tired of it. Could you tell me more about when the worry is strongest and what usually helps a little?")


def conv(cid, question, answer, family="counsel_chat", score=None, split="train", metadata=None, topic=None):
    return {"conversation_id": cid, "family": family, "quality_score": score, "split": split, "topic": topic,
            "metadata": metadata or {},
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def hh(cid, prompt, chosen, rejected_tail, shares="true", split="train"):
    meta = {"pair_shares_prefix": shares, "prompt_turns": str(len(prompt)),
            "rejected_messages": json.dumps(rejected_tail)}
    return {"conversation_id": cid, "family": "hh_rlhf_harmless", "quality_score": None, "split": split,
            "topic": None, "metadata": meta, "messages": prompt + [{"role": "assistant", "content": chosen}]}


def texts(pairs, column):
    return [m[0]["content"] for m in pairs[column]]


def templates_with(degraded: list, slots: dict | None = None, safety: dict | None = None):
    return parse_templates({"slots": slots or {}, "degraded": degraded, "safety": safety or {}})

