"""sessions stage: long raw sessions -> `long_running_therapy` windows that start at user turns."""

from __future__ import annotations

import json

from etl import contract
from etl.io import delta
from etl.schemas import CONVERSATIONS, CONVERSATIONS_SCHEMA
from etl.stages import sessions
from etl.stages.sessions import plan_windows, session_windows

FAMILIES = ("{es: {path: 'es/**', format: esconv_json}, cc: {path: 'cc/**', format: qa_csv}, "
            "long_running_therapy: {source: generated}, synth: {source: generated}}")


def alternating(n: int, chars: int = 100, first: str = "user") -> list[dict]:
    other = "assistant" if first == "user" else "user"
    return [{"role": first if i % 2 == 0 else other, "content": f"{i:05d}" + "x" * (chars - 5)} for i in range(n)]


def parent(messages: list[dict], cid: str = "p1", metadata: dict | None = None) -> dict:
    return {"conversation_id": cid, "family": "es", "source_uri": "es/a.json", "source_etag": "e1",
            "source_locator": "index:3", "messages": messages, "metadata": metadata or {}, "topic": "grief",
            "quality_score": 4.5, "pii_redacted": True}


def test_session_within_budget_is_one_window_holding_the_whole_session():
    msgs = alternating(21, chars=10, first="assistant")
    rows = session_windows(parent(msgs), max_chars=8000, overlap_turns=4)
    assert len(rows) == 1
    assert json.loads(rows[0]["messages_json"]) == msgs
    assert rows[0]["parent_id"] == "p1"
    assert rows[0]["conversation_id"] == contract.conversation_id("long_running_therapy", "derived:p1", "window:0")
    meta = json.loads(rows[0]["metadata_json"])
    assert (meta["window_index"], meta["window_total"], meta["turn_start"], meta["turn_end"]) == ("0", "1", "0", "21")
    assert meta["parent_family"] == "es"


def test_windows_start_at_user_turns():
    # assistant greeting first, a user turn left dangling at the end: windows start at user turns, end at assistants
    roles = ["assistant", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert plan_windows(roles, [10, 50, 50, 50, 50, 50, 50, 5], max_chars=120, overlap_turns=1) == [
        (1, 3), (3, 5), (5, 7)]


def test_each_window_holds_a_user_and_an_assistant_turn_and_repeats_the_system_prompt():
    msgs = [{"role": "system", "content": "You are a counsellor."}] + alternating(12, chars=100)
    rows = session_windows(parent(msgs), max_chars=450, overlap_turns=2)
    windows = [json.loads(r["messages_json"]) for r in rows]
    assert [(json.loads(r["metadata_json"])["turn_start"], json.loads(r["metadata_json"])["turn_end"])
            for r in rows] == [("1", "5"), ("3", "7"), ("5", "9"), ("7", "11"), ("9", "13")]
    for w in windows:
        assert w[0]["role"] == "system" and w[1]["role"] == "user" and w[-1]["role"] == "assistant"
    assert rows[0]["uncovered_turns"] == 0


def test_consecutive_windows_overlap_by_the_configured_turns():
    assert plan_windows(["user", "assistant"] * 10, [100] * 20, max_chars=600, overlap_turns=2) == [
        (0, 6), (4, 10), (8, 14), (12, 18), (16, 20)]
    assert plan_windows(["user", "assistant"] * 5, [100] * 10, max_chars=400, overlap_turns=0) == [
        (0, 4), (4, 8), (8, 10)]


def test_exchange_longer_than_the_budget_is_one_complete_oversize_window():
    msgs = [{"role": "user", "content": "u" * 50}, {"role": "assistant", "content": "a" * 500},
            {"role": "user", "content": "u" * 50}, {"role": "assistant", "content": "a" * 50}]
    rows = session_windows(parent(msgs), max_chars=200, overlap_turns=1)
    assert [(r["turn_count"], r["oversize"]) for r in rows] == [(2, True), (2, False)]


def test_per_assistant_strategies_are_sliced_to_the_window_and_pair_fields_dropped():
    msgs = alternating(6, chars=100)
    meta = {"strategies": json.dumps(["s0", "s1", "s2"]), "emotion_type": "sadness", "rejected_messages": "[]"}
    rows = session_windows(parent(msgs, metadata=meta), max_chars=250, overlap_turns=0)
    metas = [json.loads(r["metadata_json"]) for r in rows]
    assert [json.loads(m["strategies"]) for m in metas] == [["s0"], ["s1"], ["s2"]]
    assert all(m["emotion_type"] == "sadness" and "rejected_messages" not in m for m in metas)


def test_two_thousand_turn_session():
    windows = plan_windows(["user", "assistant"] * 1000, [100] * 2000, max_chars=8000, overlap_turns=4)
    assert len(windows) == 27
    assert windows[:2] == [(0, 80), (76, 156)]
    assert windows[-1] == (1976, 2000)


def conv_row(cid: str, family: str, messages: list[dict], parent_id: str | None = None) -> tuple:
    return (cid, family, f"{family}/x", "etag", f"line:{cid}", "r0", messages, contract.content_hash(messages),
            {"k": "v"}, None, len(messages), sum(len(m["content"]) for m in messages), None, True, parent_id)


def test_stage_extracts_long_sessions_of_the_chosen_raw_families_with_parent_provenance(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path), families=FAMILIES, long_sessions__families="[es]")
    stale = alternating(30, chars=10)
    rows = [
        conv_row("short", "es", alternating(10)),
        conv_row("long24", "es", alternating(24)),  # 2,400 chars: one window
        conv_row("huge", "es", alternating(2000)),  # 200,000 chars: 27 windows
        conv_row("synthetic", "synth", alternating(40)),  # generated family: never extracted
        conv_row("cc_long", "cc", alternating(30)),  # raw, long, but not in long_sessions.families
        conv_row("stale", "long_running_therapy", stale, parent_id="gone"),  # replaced by this run
    ]
    delta.write_table(spark.createDataFrame(rows, CONVERSATIONS_SCHEMA), cfg, CONVERSATIONS, "r0", "test")

    counts = sessions.run(spark, cfg, "r1")

    assert (counts["sessions"], counts["windows"], counts["sessions_windowed"]) == (2, 28, 1)
    assert counts["turns"] == {"min": 24, "median": 1012.0, "max": 2000}
    got = delta.read_table(spark, cfg, CONVERSATIONS).where("family = 'long_running_therapy'").collect()
    assert len(got) == 28
    by_parent = {}
    for r in got:
        by_parent.setdefault(r["parent_id"], []).append(r)
        assert r["messages"][0]["role"] == "user" and r["messages"][-1]["role"] == "assistant"
        assert r["content_hash"] == contract.content_hash([m.asDict() for m in r["messages"]])
        assert r["conversation_id"] == contract.conversation_id(
            "long_running_therapy", f"derived:{r['parent_id']}", r["source_locator"])
    assert sorted(by_parent) == ["huge", "long24"]
    assert len(by_parent["huge"]) == 27
    assert {r["metadata"]["window_total"] for r in by_parent["huge"]} == {"27"}
    assert by_parent["long24"][0]["turn_count"] == 24

    assert sessions.run(spark, cfg, "r2")["changed"] is False  # same input: no new Delta version
