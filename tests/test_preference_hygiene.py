"""Preference pairs: pair hygiene (identical, near-identical, two splits, rejected in SFT, length bias), the Spark
stage's schema and buckets, and the exported records accepted by datasets + TRL."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from etl.generators import hygiene
from etl.dedup.minhash import normalize_for_shingles
from etl.generators import preference as pref
from etl.schemas import PREFERENCE_PAIRS_SCHEMA
from preference_support import LONG_ANSWER, conv, hh, templates_with


# ---------------------------------------------------------------- hygiene

def pair(pid, chosen, rejected, prompt="q", split="train", strategy="degraded"):
    return pref.make_pair(strategy, [{"role": "user", "content": prompt}], chosen, rejected, [pid], "f", split, 1) | {
        "pair_id": pid}


def test_hygiene_flags_identical_near_identical_two_splits_and_rejected_in_sft():
    pairs = pd.DataFrame([
        pair("ok", "A long and careful answer about sleep and worry.", "Whatever.", prompt="p1"),
        pair("same", "Same text.", "  Same   text. ", prompt="p2"),
        pair("near", "I can't help with that.", "I can't help with that!!", prompt="p3"),
        pair("t1", "Answer x here.", "No.", prompt="p4", split="train"),
        pair("t2", "Answer y here.", "Nope.", prompt="p4", split="test"),
        pair("sft", "Fine answer.", "Known SFT answer.", prompt="p5"),
        pair("exempt", "Fine answer.", "Known SFT answer.", prompt="p6", strategy="ranked"),
    ])
    checks = hygiene.pair_checks(pairs)
    sft = hygiene.assistant_turn_hashes(pd.DataFrame({"messages": [
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Known SFT answer."}]]}))
    reasons = hygiene.drop_reasons(checks, max_jaccard=0.7, sft_hashes=sft, exempt=("ranked",))
    assert dict(zip(checks.pair_id, reasons)) == {
        "ok": None, "same": "identical", "near": "near_identical", "t1": "prompt_in_two_splits",
        "t2": "prompt_in_two_splits", "sft": "rejected_in_sft", "exempt": None}


def test_batched_jaccards_equal_the_set_jaccard_of_each_pair_short_texts_by_words():
    words = "sleep worry exams night tired mother call help breathe slowly again today".split()
    rng = np.random.default_rng(5)
    texts = [" ".join(rng.choice(words, size=n)) for n in rng.integers(0, 25, 60)] + ["I can't help.", ""]
    chosen, rejected = texts[:31], texts[31:]
    got = hygiene.pair_jaccards(chosen, rejected, shingle_size=3)

    def expected(a: str, b: str) -> float:
        a, b = normalize_for_shingles(a).split(), normalize_for_shingles(b).split()
        k = 3 if min(len(a), len(b)) >= 6 else 1
        sa = {tuple(a[i:i + k]) for i in range(len(a) - k + 1)} or ({tuple(a)} if a else set())
        sb = {tuple(b[i:i + k]) for i in range(len(b) - k + 1)} or ({tuple(b)} if b else set())
        return len(sa & sb) / len(sa | sb) if sa | sb else 1.0

    assert got.tolist() == pytest.approx([expected(a, b) for a, b in zip(chosen, rejected)])
    assert hygiene.pair_jaccard("I can't help.", "I can't help you.", 5) == 0.75  # short texts: words
    assert hygiene.pair_jaccards([], [], 5).shape == (0,)


def test_length_ratio_by_strategy_reports_chosen_over_rejected_chars():
    pairs = pd.DataFrame([pair("a", "x" * 30, "y" * 10), pair("b", "x" * 10, "y" * 10, prompt="q2")])
    table = hygiene.length_ratio_by_strategy(hygiene.pair_checks(pairs))
    assert table.to_dict("records") == [{"strategy": "degraded", "pairs": 2, "mean_ratio": 2.0, "median_ratio": 2.0,
                                         "p10_ratio": 1.2, "p90_ratio": 2.8, "chosen_longer_share": 0.5}]


# ---------------------------------------------------------------- Spark + export format

def test_apply_in_pandas_output_matches_preference_pairs_schema(spark):
    from etl.schemas import CONVERSATIONS_SCHEMA
    from etl.stages import preference_pairs as stage

    rows = [conv("a", "How do I cope?", "Best answer", score=3.0), conv("b", "How do I cope?", "Weak", score=0.0),
            conv("c", "Alone?", "Only answer", score=1.0)]
    base = [{**r, "source_uri": "x", "source_etag": None, "source_locator": r["conversation_id"],
             "ingest_run_id": "r", "content_hash": "h", "turn_count": 2, "char_count": 10, "pii_redacted": True,
             "parent_id": None, "metadata": {"question_id": r["messages"][0]["content"]}} for r in rows]
    conversations = spark.createDataFrame([{k: r[k] for k in CONVERSATIONS_SCHEMA.fieldNames()} for r in base],
                                          CONVERSATIONS_SCHEMA)
    splits = conversations.select("conversation_id", "family").selectExpr(
        "conversation_id", "family", "conversation_id AS split_group", "'train' AS split", "'hash' AS rule")
    inputs = stage.pair_inputs(conversations, splits, spark.createDataFrame([], "conversation_id string, "
                               "cluster_id string, is_canonical boolean"))
    out = stage.ranked_rows(stage.with_prompt_keys(inputs), ("counsel_chat",), 1.0, 17, 1)
    pairs = stage.only_pairs(out)
    assert pairs.schema == PREFERENCE_PAIRS_SCHEMA
    got = pairs.collect()
    assert [(r.chosen[0].content, r.rejected[0].content, r.margin) for r in got] == [("Best answer", "Weak", 3.0)]
    assert {(r.skip_reason, r.n) for r in stage.skip_counts(out).collect()} == {("single_answer", 1)}


def test_exported_pairs_load_with_datasets_and_pass_trl_chat_template(tmp_path):
    datasets = pytest.importorskip("datasets")
    data_utils = pytest.importorskip("trl.data_utils")
    from jinja2 import Template

    prompt = [{"role": "user", "content": "How do I steal a car?"}]
    native, _ = pref.native_pairs(pd.DataFrame([hh("h1", prompt, "I can't help.", [
        {"role": "assistant", "content": "Break a window."}])]))
    answers = pd.DataFrame([conv("a", "Q?", "Best", score=2.0), conv("b", "Q?", "Worst", score=0.0)])
    ranked, _ = pref.ranked_pairs(answers)
    path = tmp_path / "train-00000-of-00001.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for row in native.to_dict("records") + ranked.to_dict("records"):
            record = {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"],
                      "metadata": {"pair_id": row["pair_id"], "strategy": row["strategy"]}}
            fh.write(json.dumps(record) + "\n")
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    assert ds.num_rows == 2

    chatml = Template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

    class StubTokenizer:
        def apply_chat_template(self, messages, tools=None, tokenize=False, add_generation_prompt=False,
                                continue_final_message=False, **kwargs):
            return chatml.render(messages=messages, add_generation_prompt=add_generation_prompt)

    example = {k: ds[0][k] for k in ("prompt", "chosen", "rejected")}
    assert data_utils.is_conversational(example)
    out = data_utils.maybe_apply_chat_template(example, StubTokenizer())
    assert out["prompt"] == "<|im_start|>user\nHow do I steal a car?<|im_end|>\n<|im_start|>assistant\n"
    assert out["chosen"] == "I can't help.<|im_end|>\n"
    assert out["rejected"] == "Break a window.<|im_end|>\n"


def test_bucketed_strategies_give_the_pairs_of_one_call_per_group(spark):
    """Ranked and degraded run one Python call per hash bucket: same pairs and skips as one call per group."""
    from collections import Counter

    from etl.stages import preference_pairs as stage

    rows = []
    for q in range(40):  # more questions than buckets; every third has a single answer (a skip)
        rows.append(conv(f"q{q}a", f"Question {q}: how do I cope?", f"{LONG_ANSWER} Best {q}.", score=5.0,
                         metadata={"question_id": f"Q{q}"}))
        if q % 3:
            rows.append(conv(f"q{q}b", f"Question {q}: how do I cope?", f"Weak {q}", score=0.0,
                             metadata={"question_id": f"Q{q}"}))
    frame = pd.DataFrame(rows)
    frame["prompt_key"] = [pref.prompt_key([m]) for m in (r["messages"][0] for r in rows)]
    frame["split_group"], frame["cluster_id"] = frame["conversation_id"], None
    frame["question_id"] = [m["question_id"] for m in frame["metadata"]]
    expected, expected_skips = [], Counter()
    for _, group in frame.groupby(["family", "question_id", "prompt_key"], sort=True):
        pairs, skips = pref.ranked_pairs(group.reset_index(drop=True), 1.0, 17, 1)
        expected += sorted(pairs["pair_id"])
        expected_skips.update(skips)
    keyed = spark.createDataFrame(frame.drop(columns=["question_id"]),
                                  "conversation_id string, family string, quality_score double, split string, "
                                  "topic string, metadata map<string,string>, messages array<struct<role:string,"
                                  "content:string>>, prompt_key string, split_group string, cluster_id string")
    out = stage.ranked_rows(keyed, ("counsel_chat",), 1.0, 17, 1)
    assert sorted(r.pair_id for r in stage.only_pairs(out).collect()) == sorted(expected)
    assert len(expected) == 26 and expected_skips == Counter({"single_answer": 14})
    assert {(r.skip_reason, r.n) for r in stage.skip_counts(out).collect()} == {("single_answer", 14)}

    templates = templates_with([{"id": "dismiss", "kind": "dismissive", "text": "Just relax."}])
    pairs, _ = pref.degraded_pairs(frame, templates, 17, 1)
    degraded = stage.degraded_rows(keyed, ("counsel_chat",), templates, 17, 1)
    assert sorted(r.pair_id for r in stage.only_pairs(degraded).collect()) == sorted(pairs["pair_id"])
    assert len(pairs) == 40
