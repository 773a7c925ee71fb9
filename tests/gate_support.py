"""Builders and fixtures of tests/test_gates.py: a tiny sound release, its lake tables and a one-gate runner."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from etl import contract
from etl.schemas import (
    CONVERSATIONS,
    CONVERSATIONS_SCHEMA,
    CURRICULUM,
    CURRICULUM_SCHEMA,
    DUP_EDGES,
    DUP_EDGES_SCHEMA,
    INVENTORY,
    INVENTORY_SCHEMA,
    PREFERENCE_PAIRS,
    PREFERENCE_PAIRS_SCHEMA,
    SPLITS,
    SPLITS_SCHEMA,
)

FAMILIES = ("{counsel_chat: {path: 'counsel_chat/**', format: qa_csv, required: true, min_records: 2},"
            " preference_ranked: {source: generated}}")
SOURCE = "counsel_chat/answers.csv"
TURNS = {
    "c1": ("How can I stop worrying about my exams every night?",
           "Set a fixed study plan and write worries down before bed so they feel smaller."),
    "c2": ("My partner and I argue about chores all the time lately.",
           "Try agreeing on a weekly chore list together during a calm moment."),
    "c3": ("I feel lonely since moving to a new city for work.",
           "Joining a local class or club can help you meet people with shared interests."),
    "c4": ("How do I tell my parents that I want to change careers?",
           "Plan what you want to say and explain the reasons that matter most to you."),
}
SPLIT_OF = {"c1": "train", "c2": "train", "c3": "val", "c4": "test"}
REJECTED = "Just stop worrying, it is honestly not a big deal at all."


def _messages(cid: str) -> list[dict]:
    user, assistant = TURNS[cid]
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _meta(cid: str, split: str | None = None) -> dict:
    return {"conversation_id": cid, "family": "counsel_chat", "split": split or SPLIT_OF[cid], "topic": "anxiety",
            "content_hash": contract.content_hash(_messages(cid)), "source_uri": SOURCE, "source_etag": "e1",
            "source_locator": f"row={cid}", "parent_id": None}


def sft(cid: str, split: str | None = None) -> dict:
    return {"messages": _messages(cid), "metadata": _meta(cid, split)}


def pair() -> dict:
    return {"prompt": _messages("c1")[:1], "chosen": _messages("c1")[1:],
            "rejected": [{"role": "assistant", "content": REJECTED}],
            "metadata": {"pair_id": "p1", "family": "preference_ranked", "prompt_family": "counsel_chat",
                         "split": "train", "strategy": "ranked", "margin": 3.0, "source_conversation_ids": ["c1"]}}


def sound_shards() -> dict[str, list[dict]]:
    text = "\n\n".join(f"{m['role'].title()}: {m['content']}" for m in _messages("c1"))
    return {
        "A/domain_text/train-00000-of-00001.jsonl": [{"text": text, "metadata": _meta("c1")}],
        "B/foundations_qa/train-00000-of-00001.jsonl": [sft("c1"), sft("c2")],
        "B/foundations_qa/val-00000-of-00001.jsonl": [sft("c3")],
        "B/foundations_qa/test-00000-of-00001.jsonl": [sft("c4")],
        "C/preference_alignment/train-00000-of-00001.jsonl.gz": [pair()],
    }


def write_release(root: Path, shards: dict[str, list[dict]], tables: list[dict]) -> dict:
    """Shard files + a manifest that describes them exactly."""
    entries = []
    for rel, lines in sorted(shards.items()):
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        data = gzip.compress(data, mtime=0) if rel.endswith(".gz") else data
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        phase, stage, name = rel.split("/")
        entries.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                        "records": len(lines), "phase": phase, "stage": stage, "split": name.split("-")[0]})
    manifest = {"release_id": "rel-gates", "created_at": "2026-01-01T00:00:00Z", "code_version": "t",
                "config_hash": "t", "shards": entries, "counts": {}, "tables": tables}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


# ------------------------------------------------------------------ lake fixtures


def conversation_rows(ids=("c1", "c2", "c3", "c4")) -> list[dict]:
    return [{"conversation_id": cid, "family": "counsel_chat", "source_uri": SOURCE, "source_etag": "e1",
             "source_locator": f"row={cid}", "ingest_run_id": "r0", "messages": _messages(cid),
             "content_hash": contract.content_hash(_messages(cid)), "metadata": {}, "topic": "anxiety",
             "turn_count": 2, "char_count": 100, "quality_score": None, "pii_redacted": True, "parent_id": None}
            for cid in ids]


def pair_rows() -> list[dict]:
    p = pair()
    return [{"pair_id": "p1", "prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
             "strategy": "ranked", "margin": 3.0, "chosen_score": 5.0, "rejected_score": 2.0,
             "source_conversation_ids": ["c1"], "family": "preference_ranked", "split": "train"}]


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """(lake_root, manifest table entries): conversations and preference_pairs as Delta tables, version 0."""
    from etl.config import load_config
    from etl.io import delta

    root = tmp_path_factory.mktemp("gates_lake")
    cfg = load_config(None, [f"lake_root={root / 'lake'}", f"raw_root={root}", "database=gates_test"])
    tables = []
    for name, rows, schema in ((CONVERSATIONS, conversation_rows(), CONVERSATIONS_SCHEMA),
                               (PREFERENCE_PAIRS, pair_rows(), PREFERENCE_PAIRS_SCHEMA)):
        delta.write_table(spark.createDataFrame(rows, schema), cfg, name, "r0", "test")
        tables.append({"name": name, "path": name, "version": 0,
                       "history": [{k: h[k] for k in ("version", "timestamp", "operation", "operationMetrics",
                                                     "userMetadata")} for h in delta.history(spark, cfg.table_path(name))]})
    return str(root / "lake"), tables


def lake_tables(spark, conversations=None) -> dict:
    """Inline lake tables (same content as the Delta ones) for the gates."""
    conv = conversations if conversations is not None else conversation_rows()
    splits = [{"conversation_id": r["conversation_id"], "family": r["family"], "split_group": r["conversation_id"],
               "split": SPLIT_OF.get(r["conversation_id"], "test"), "rule": "hash"} for r in conv]
    inventory = [{"key": SOURCE, "uri": f"/raw/{SOURCE}", "size": 10, "etag": "e1", "mtime": None,
                  "family": "counsel_chat", "format": "qa_csv", "status": "mapped", "detail": None}]
    curriculum = [("counsel_chat", "A", "domain_text", 1, 1.0, []), ("counsel_chat", "B", "foundations_qa", 1, 1.0, []),
                  ("preference_ranked", "C", "preference_alignment", 1, 1.0, [])]
    return {
        CONVERSATIONS: spark.createDataFrame(conv, CONVERSATIONS_SCHEMA),
        SPLITS: spark.createDataFrame(splits, SPLITS_SCHEMA),
        INVENTORY: spark.createDataFrame(inventory, INVENTORY_SCHEMA),
        PREFERENCE_PAIRS: spark.createDataFrame(pair_rows(), PREFERENCE_PAIRS_SCHEMA),
        CURRICULUM: spark.createDataFrame(curriculum, CURRICULUM_SCHEMA),
        DUP_EDGES: spark.createDataFrame([], DUP_EDGES_SCHEMA),
    }


@pytest.fixture
def gate_run(spark, lake, make_config, tmp_path):
    """Run one gate over a release built from `shards` (default: the sound release); returns its GateResult."""
    from etl.gates import close_release, open_release, run_gate

    lake_root, table_entries = lake

    def _run(gate: str, shards=None, tables=None, conversations=None, families=FAMILIES, **overrides):
        cfg = make_config(raw_root=str(tmp_path), lake_root=lake_root, families=families, **overrides)
        write_release(Path(cfg.release_dir), shards or sound_shards(),
                      table_entries if tables is None else tables)
        view = open_release(spark, cfg, lake_tables(spark, conversations))
        try:
            return run_gate(gate, view)
        finally:
            close_release(view)

    return _run


@pytest.fixture(scope="module")
def sound(spark, lake, tmp_path_factory):
    """Every gate run once over the sound release: {gate: GateResult} for the passing tests."""
    from etl.config import load_config
    from etl.gates import close_release, open_release, run_gates

    root = tmp_path_factory.mktemp("sound")
    cfg = load_config(None, [f"raw_root={root}", f"lake_root={lake[0]}", f"release_dir={root / 'release'}",
                             "database=gates_sound", f"families={FAMILIES}", "verify.min_rows_for_ratio_check=5",
                             "verify.split_tolerance=0.35"])
    write_release(Path(cfg.release_dir), sound_shards(), lake[1])
    view = open_release(spark, cfg, lake_tables(spark))
    try:
        return {r.gate: r for r in run_gates(view)}
    finally:
        close_release(view)
