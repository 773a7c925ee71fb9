"""Shared helpers of the reader tests (test_readers.py: one behaviour per test on tiny inline bytes;
test_readers_robustness.py: property tests and the real corpus)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml

from etl.readers import ReaderLimits, Record, read_object

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / ".." / "shared" / "data" / "raw"
LIMITS = ReaderLimits()
# The routing config the pipeline uses for the real corpus: the real-corpus tests read with exactly these options.
FAMILIES = yaml.safe_load((REPO / "conf" / "shared_corpus.yaml").read_text())["families"]
COUNSEL_2020_OPTIONS = FAMILIES["counsel_chat"]["options"]
COUNSEL_LEGACY_OPTIONS = FAMILIES["counsel_chat_legacy"]["options"]
QA_OPTIONS = {  # inline tests: the 2020 columns, with `split` taken through metadata_columns (renamed)
    "columns": {"prompt": "questionText", "title": "questionTitle", "response": "answerText", "topic": "topic",
                "quality": "upvotes", "group": "questionID", "author": "therapistInfo"},
    "metadata_columns": ["views", "split", "questionLink"],
    "html": True,
}
OPTIONS = {"qa_csv": QA_OPTIONS, "hh_transcript_jsonl": {}, "esconv_json": {}, "chatml_jsonl": {}}


def read(fmt: str, data: bytes, options: dict | None = None, limits: ReaderLimits = LIMITS) -> list[Record]:
    return list(read_object(fmt, io.BytesIO(data), OPTIONS[fmt] if options is None else options, limits))


def errors(records: list[Record]) -> list[tuple[str, str]]:
    return [(r.locator, r.error) for r in records if r.error]


def good_locators(records: list[Record]) -> list[str]:
    return [r.locator for r in records if r.error is None]


def jsonl(*objs) -> bytes:
    return b"".join((o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objs)


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}
