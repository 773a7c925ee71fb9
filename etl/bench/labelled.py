"""The labelled near-duplicate benchmark built from real counsel_chat answers (pure Python, deterministic).

Every 2020 counsel_chat answer is a conversation of the corpus. For each duplicate kind (etl.bench.perturb) a
disjoint sample of answers gets one perturbed copy, labelled a duplicate of its original, and two hard negatives
of the copy: another therapist's answer to the same question (`same_question`, which dedup must keep apart:
related at most) and an answer to another question of the same topic (`same_topic`). Negatives whose answer text
equals the original's (the scrape repeats some answers verbatim) are never drawn.
"""

from __future__ import annotations

import csv
import random
import sys
from collections import defaultdict
from pathlib import Path

from etl.bench.pairs import norm_key, same_therapist, therapist_key
from etl.bench.perturb import DUPLICATE_KINDS, perturb_conversation
from etl.contract import clean_content, content_hash, conversation_id, strip_html
from etl.readers.qa_csv import user_content

COUNSEL_CSV = "counsel_chat/20200325_counsel_chat.csv"
NEG_SAME_QUESTION, NEG_SAME_TOPIC = "same_question", "same_topic"
ORIGINAL_FAMILY, COPY_FAMILY = "counsel_chat", "counsel_chat_copy"
MIN_ANSWER_CHARS = 200


def load_answers(raw_root: str) -> list[dict]:
    """2020 counsel_chat rows as conversations: id, title, topic, therapist, messages (as qa_csv builds them)."""
    csv.field_size_limit(sys.maxsize)
    out = []
    with open(Path(raw_root) / COUNSEL_CSV, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=1):
            prompt = clean_content(user_content(row.get("questionTitle") or "", row.get("questionText") or ""))
            answer = clean_content(strip_html(row.get("answerText") or ""))
            if not prompt or not answer:
                continue
            out.append({"id": conversation_id(ORIGINAL_FAMILY, COUNSEL_CSV, f"row:{i}"), "family": ORIGINAL_FAMILY,
                        "locator": f"row:{i}", "title": row.get("questionTitle") or "", "topic": row.get("topic") or "",
                        "therapist": therapist_key(row.get("therapistInfo")),
                        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
    return out


def _answer_key(conv: dict) -> str:
    return norm_key(conv["messages"][-1]["content"])


def build_benchmark(answers: list[dict], per_kind: int = 150, seed: int = 7) -> tuple[list[dict], list[dict]]:
    """(copies, labelled pairs). Pairs: {a, b, kind, label (1 duplicate / 0 not), negative (None or its kind)}."""
    rng = random.Random(f"dedup-bench:{seed}")
    by_title: dict[str, list[dict]] = defaultdict(list)
    by_topic: dict[str, list[dict]] = defaultdict(list)
    for conv in answers:
        by_title[norm_key(conv["title"])].append(conv)
        by_topic[conv["topic"]].append(conv)

    def others_same_question(conv: dict) -> list[dict]:
        return [o for o in by_title[norm_key(conv["title"])] if not same_therapist(o["therapist"], conv["therapist"])
                and _answer_key(o) != _answer_key(conv)]

    def others_same_topic(conv: dict) -> list[dict]:
        title = norm_key(conv["title"])
        return [o for o in by_topic[conv["topic"]] if norm_key(o["title"]) != title and _answer_key(o) != _answer_key(conv)]

    eligible = [c for c in answers if len(c["messages"][-1]["content"]) >= MIN_ANSWER_CHARS
                and others_same_question(c) and others_same_topic(c)]
    rng.shuffle(eligible)
    if len(eligible) < per_kind * len(DUPLICATE_KINDS):
        raise ValueError(f"only {len(eligible)} eligible answers for {per_kind} per kind x {len(DUPLICATE_KINDS)} "
                         "kinds; lower --per-kind")
    copies, pairs = [], []
    for k, kind in enumerate(DUPLICATE_KINDS):
        for j, original in enumerate(eligible[k * per_kind:(k + 1) * per_kind]):
            messages = perturb_conversation(original["messages"], kind, rng)
            copy = {"id": conversation_id(COPY_FAMILY, kind, f"copy:{j}"), "family": COPY_FAMILY,
                    "locator": f"{kind}:{j}", "title": original["title"], "topic": original["topic"],
                    "therapist": original["therapist"], "messages": messages, "parent_id": original["id"]}
            copies.append(copy)
            same_q = others_same_question(original)
            same_t = others_same_topic(original)
            pairs += [{"a": copy["id"], "b": original["id"], "kind": kind, "label": 1, "negative": None},
                      {"a": copy["id"], "b": same_q[rng.randrange(len(same_q))]["id"], "kind": kind, "label": 0,
                       "negative": NEG_SAME_QUESTION},
                      {"a": copy["id"], "b": same_t[rng.randrange(len(same_t))]["id"], "kind": kind, "label": 0,
                       "negative": NEG_SAME_TOPIC}]
    return copies, pairs


def conversation_rows(convs: list[dict], run_id: str) -> list[dict]:
    """Rows in CONVERSATIONS_SCHEMA field order for benchmark conversations (no PII redaction: public text)."""
    rows = []
    for c in convs:
        rows.append({
            "conversation_id": c["id"], "family": c["family"], "source_uri": "benchmark:dedup_eval",
            "source_etag": None, "source_locator": c["locator"], "ingest_run_id": run_id,
            "messages": c["messages"], "content_hash": content_hash(c["messages"]),
            "metadata": {"question_title": c["title"], "topic": c["topic"]}, "topic": c["topic"] or None,
            "turn_count": len(c["messages"]), "char_count": sum(len(m["content"]) for m in c["messages"]),
            "quality_score": None, "pii_redacted": False, "parent_id": c.get("parent_id"),
        })
    return rows
