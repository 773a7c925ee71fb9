"""lake.turn_keys: turn hashes read back by content hash equal the ones hashed from the messages, and a rerun
hashes only contents it has not seen."""

from __future__ import annotations

from pyspark.sql import functions as F

from etl import contract, leakage, turn_keys
from etl.generators import hygiene
from etl.io import delta
from etl.schemas import TURN_KEYS

CONV_SCHEMA = "conversation_id string, content_hash string, messages array<struct<role:string,content:string>>"
LONG = "I have been feeling anxious about my exams and cannot sleep at night"


def _conversations(turns: list[list[tuple[str, str]]], prefix: str = "c") -> list[tuple]:
    rows = []
    for i, msgs in enumerate(turns):
        messages = [{"role": r, "content": c} for r, c in msgs]
        rows.append((f"{prefix}{i}", contract.content_hash(messages), messages))
    return rows


TURNS = [
    [("user", LONG), ("assistant", "That sounds exhausting. What helps you wind down?")],
    [("user", "hi"), ("assistant", "Hello there, how are you doing today?"), ("user", LONG + " again"),
     ("assistant", "Thanks for sharing that with me, it matters.")],
    [("system", "You are kind."), ("user", "Hello, thank you so much, have a good day"),
     ("assistant", "ok"), ("assistant", "ok"), ("assistant", "A longer reply about sleep routines and stress")],
    [("assistant", "A conversation with no user turn at all, only an answer")],
    [("user", LONG)],  # no assistant turn
    [("user", "&lt;b&gt;Sleep&lt;/b&gt;   problems   every night since the move"),
     ("assistant", "<p>Let us look at your evenings together, step by step.</p>")],
    [("user", "<b>Sleep</b> problems every night since the move"),
     ("assistant", "Let us look at your evenings together, step by step.")],  # same answer once tags are gone
    [("user", "Cafe\u0301 worries: the cafe\u0301 job stresses me out a lot lately"),
     ("assistant", "!!! ??? ... --- !!! ??? ... --- !!!")],  # NFC; an answer with no words at all
]


def test_cached_hashes_equal_the_python_ones(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path))
    conv = spark.createDataFrame(_conversations(TURNS) + _conversations(TURNS[:2], "dup"), CONV_SCHEMA)
    keys, counts = turn_keys.keys_for(spark, cfg, conv, "run1", "test")
    assert keys.is_cached  # with no table yet too: the memo's own frame is released, not the one returned
    assert counts == {"turn_keys_hashed": 8, "turn_keys_reused": 0}  # 10 rows, 8 distinct contents
    for min_chars in (0, 10, 24, 60):  # one stored row serves every setting
        expected = {r["conversation_id"]: (r["prompt_hash"], list(r["answer_hashes"]))
                    for r in leakage.with_turn_hashes(conv, min_chars).collect()}
        got = {r["conversation_id"]: (r["prompt_hash"], list(r["answer_hashes"]))
               for r in turn_keys.with_turn_hashes(conv.drop("messages"), keys, min_chars).collect()}
        assert got == expected, min_chars
        if min_chars == 24:  # the rule still separates informative and trivial turns at this setting
            assert expected["c0"][0] is not None and expected["c5"][0] is not None
            assert expected["c1"][0] is None and expected["c2"][0] is None and expected["c3"][0] is None
            assert len(expected["c1"][1]) == 1 and len(expected["c2"][1]) == 1 and expected["c7"][1] == []
    sft = {r["text_hash"] for r in turn_keys.assistant_hashes(keys).collect()}
    assert sft == set(hygiene.assistant_turn_hashes(conv.toPandas())["text_hash"])
    keys.unpersist()


def test_rerun_hashes_only_new_contents_and_ignores_other_code(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path))
    first = spark.createDataFrame(_conversations(TURNS[:5]), CONV_SCHEMA)
    keys, counts = turn_keys.keys_for(spark, cfg, first, "run1", "test")
    keys.unpersist()
    assert counts == {"turn_keys_hashed": 5, "turn_keys_reused": 0}
    stored = delta.read_table(spark, cfg, TURN_KEYS)
    assert stored.count() == 5 and stored.select("digest").distinct().count() == 1

    # a row left by other code (another digest) is never read back: its content is hashed again
    stale = stored.where(F.col("content_hash") == _conversations(TURNS)[5][1]).count()
    assert stale == 0
    bogus = stored.limit(1).withColumn("digest", F.lit("old-code")).withColumn(
        "content_hash", F.lit(_conversations(TURNS)[5][1]))
    delta.merge_new_rows(bogus, cfg, TURN_KEYS, turn_keys.KEY_COLUMNS, "run0", "test")

    second = spark.createDataFrame(_conversations(TURNS), CONV_SCHEMA)
    keys, counts = turn_keys.keys_for(spark, cfg, second, "run2", "test")
    assert counts == {"turn_keys_hashed": 3, "turn_keys_reused": 5}  # the old-code row is not reused
    got = {r["conversation_id"]: (r["prompt_hash"], list(r["answer_hashes"]))
           for r in turn_keys.with_turn_hashes(second.drop("messages"), keys, 24).collect()}
    expected = {r["conversation_id"]: (r["prompt_hash"], list(r["answer_hashes"]))
                for r in leakage.with_turn_hashes(second, 24).collect()}
    assert got == expected
    keys.unpersist()
    assert delta.read_table(spark, cfg, TURN_KEYS).where(F.col("digest") == turn_keys.code_digest()).count() == 8
    assert delta.read_table(spark, cfg, TURN_KEYS).count() == 9  # 8 of this code + the old-code row


def test_a_turn_keys_store_that_fails_keeps_the_keys_and_names_the_table(spark, make_config, tmp_path,
                                                                         monkeypatch, caplog):
    import logging

    def denied(df, cfg, name, *args, **kwargs):
        raise PermissionError(f"Access Denied writing {cfg.table_path(name)}")

    monkeypatch.setattr(delta, "merge_new_rows", denied)
    cfg = make_config(raw_root=str(tmp_path))
    conv = spark.createDataFrame(_conversations(TURNS[:3]), CONV_SCHEMA)
    with caplog.at_level(logging.WARNING, logger="etl.io.memo"):
        keys, counts = turn_keys.keys_for(spark, cfg, conv, "run1", "test")
    assert keys.is_cached and counts == {"turn_keys_hashed": 3, "turn_keys_reused": 0}
    got = {r["conversation_id"]: r["prompt_hash"]
           for r in turn_keys.with_turn_hashes(conv.drop("messages"), keys, 24).collect()}
    assert got == {r["conversation_id"]: r["prompt_hash"] for r in leakage.with_turn_hashes(conv, 24).collect()}
    keys.unpersist()
    assert any(cfg.table_path(TURN_KEYS) in r.getMessage() and "Access Denied" in r.getMessage()
               for r in caplog.records)
    assert not delta.table_exists(spark, cfg.table_path(TURN_KEYS))
