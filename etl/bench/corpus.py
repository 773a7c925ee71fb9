"""The seed pool of the scale generator: the real corpus, de-duplicated, plus sentence and turn pools by role.

The pool must hold no duplicates of its own, or the generator's ground truth would call a real near-duplicate
(e.g. a legacy answer that repeats a 2020 answer) a distinct conversation. So: 2020 counsel_chat answers are kept
once per normalised answer text, legacy rows matching a 2020 row by title + therapist (etl.bench.pairs) are
dropped, and hh-rlhf / ESConv conversations are kept once per normalised transcript.
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from etl.bench.pairs import norm_key, same_therapist, therapist_key
from etl.bench.perturb import sentences
from etl.contract import strip_html
from etl.readers.hh_transcript import parse_transcript

COUNSEL_CSV = "counsel_chat/20200325_counsel_chat.csv"
LEGACY_CSV = "counsel_chat_legacy/counselchat-data.csv"
HH_JSONL = "hh_rlhf_harmless/test.jsonl.gz"
ESCONV_JSON = "esconv_failed/FailedESConv.json"


@dataclass
class SeedPool:
    """De-duplicated real conversations per family and the pools novel conversations are recombined from."""

    qa: list[dict] = field(default_factory=list)  # {title, question, answer, topic, therapist, upvotes}
    hh: list[dict] = field(default_factory=list)  # {messages, rejected}
    esconv: list[dict] = field(default_factory=list)  # raw ESConv session objects
    question_sentences: dict[str, list[str]] = field(default_factory=dict)  # topic -> sentences
    answer_sentences: dict[str, list[str]] = field(default_factory=dict)
    question_lengths: list[int] = field(default_factory=list)
    answer_lengths: list[int] = field(default_factory=list)
    turns: dict[str, list[str]] = field(default_factory=dict)  # "hh_user", "hh_assistant", "es_user", "es_assistant"
    therapists: list[str] = field(default_factory=list)


def _read_csv(path: Path) -> list[dict]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _qa_rows(raw_root: Path) -> list[dict]:
    """2020 rows (once per answer text) + legacy rows that the 2020 scrape does not already hold."""
    out, seen_answers = [], set()
    titles: dict[str, list[str]] = defaultdict(list)
    for row in _read_csv(raw_root / COUNSEL_CSV):
        answer = strip_html(row.get("answerText") or "")
        key = norm_key(answer)
        titles[norm_key(row.get("questionTitle"))].append(therapist_key(row.get("therapistInfo")))
        if not key or key in seen_answers:
            continue
        seen_answers.add(key)
        out.append({"title": row.get("questionTitle") or "", "question": row.get("questionText") or "",
                    "answer": answer, "topic": row.get("topic") or "general",
                    "therapist": (row.get("therapistInfo") or "").split(",")[0], "upvotes": row.get("upvotes") or "0"})
    for row in _read_csv(raw_root / LEGACY_CSV):
        name = therapist_key(row.get("therapistName"))
        if any(same_therapist(name, other) for other in titles.get(norm_key(row.get("questionTitle")), [])):
            continue  # the same answer as a 2020 row
        answer = strip_html(row.get("answerText") or "")
        key = norm_key(answer)
        if not key or key in seen_answers:
            continue
        seen_answers.add(key)
        topic = (row.get("topics") or "general").split(",")[0].strip().lower().replace(" ", "-") or "general"
        out.append({"title": row.get("questionTitle") or "", "question": row.get("questionText") or "",
                    "answer": answer, "topic": topic, "therapist": (row.get("therapistName") or "").split(",")[0],
                    "upvotes": row.get("upvotes") or "0"})
    return out


def _hh_rows(raw_root: Path) -> list[dict]:
    out, seen = [], set()
    with gzip.open(raw_root / HH_JSONL, "rt", encoding="utf-8") as fh:
        for line in fh:
            obj = json.loads(line)
            try:
                chosen, rejected = parse_transcript(obj["chosen"]), parse_transcript(obj["rejected"])
            except ValueError:
                continue
            key = norm_key(" ".join(t["content"] for t in chosen))
            if not key or key in seen or not any(t["role"] == "assistant" for t in chosen):
                continue
            seen.add(key)
            out.append({"messages": chosen, "rejected": rejected[-1]["content"] if rejected else ""})
    return out


def _esconv_rows(raw_root: Path) -> list[dict]:
    out, seen = [], set()
    with open(raw_root / ESCONV_JSON, encoding="utf-8") as fh:
        for session in json.load(fh):
            key = norm_key(" ".join(str(t.get("content", "")) for t in session.get("dialog", [])))
            if key and key not in seen:
                seen.add(key)
                out.append(session)
    return out


def load_pool(raw_root: str) -> SeedPool:
    """Read the real corpus under raw_root into a de-duplicated SeedPool (deterministic: file order)."""
    root = Path(raw_root)
    pool = SeedPool(qa=_qa_rows(root), hh=_hh_rows(root), esconv=_esconv_rows(root))
    q_sent: dict[str, list[str]] = defaultdict(list)
    a_sent: dict[str, list[str]] = defaultdict(list)
    for row in pool.qa:
        q_sent[row["topic"]].extend(s for s in sentences(row["question"]) if len(s) >= 15)
        a_sent[row["topic"]].extend(s for s in sentences(row["answer"]) if len(s) >= 15)
        pool.question_lengths.append(len(row["question"]))
        pool.answer_lengths.append(len(row["answer"]))
    topics = sorted(t for t in q_sent if len(q_sent[t]) >= 5 and len(a_sent[t]) >= 20)
    pool.question_sentences = {t: q_sent[t] for t in topics}
    pool.answer_sentences = {t: a_sent[t] for t in topics}
    pool.therapists = sorted({row["therapist"] for row in pool.qa if row["therapist"]})
    turns: dict[str, list[str]] = defaultdict(list)
    for row in pool.hh:
        for t in row["messages"]:
            turns[f"hh_{t['role']}"].append(t["content"])
    for session in pool.esconv:
        for t in session.get("dialog", []):
            role = "user" if t.get("speaker") in ("speaker", "seeker", "usr") else "assistant"
            if str(t.get("content", "")).strip():
                turns[f"es_{role}"].append(str(t["content"]).strip())
    pool.turns = dict(turns)
    return pool
