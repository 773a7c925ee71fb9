"""Preference pairs: one pandas test per strategy with hand-written expectations, bad input skipped and counted
(pair hygiene, the Spark stage and the export format: test_preference_hygiene.py; builders: preference_support.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etl.generators import preference as pref
from preference_support import LONG_ANSWER, PAIR_COLUMNS, conv, hh, templates_with, texts


# ---------------------------------------------------------------- ranked

def test_ranked_pairs_best_answer_against_lowest_with_upvote_margin():
    group = pd.DataFrame([conv("a", "How do I cope?", "Best answer", score=3.0),
                          conv("b", "How do I cope?", "Middle answer", score=1.0),
                          conv("c", "How do I cope?", "Weak answer", score=0.0)])
    pairs, skips = pref.ranked_pairs(group, min_margin=1.0)
    assert list(pairs.columns) == PAIR_COLUMNS
    assert texts(pairs, "chosen") == ["Best answer"] and texts(pairs, "rejected") == ["Weak answer"]
    row = pairs.iloc[0]
    assert (row.margin, row.chosen_score, row.rejected_score) == (3.0, 3.0, 0.0)
    assert list(row.source_conversation_ids) == ["a", "c"]
    assert row.prompt == [{"role": "user", "content": "How do I cope?"}] and row.split == "train"
    assert skips == {}


@pytest.mark.parametrize("scores, reason", [([2.0], "single_answer"), ([1.0, 1.0, 1.0], "all_tied"),
                                            ([2.0, 1.5], "margin_below_min")])
def test_ranked_pairs_skip_unusable_questions_with_a_reason(scores, reason):
    group = pd.DataFrame([conv(f"c{i}", "Q?", f"answer {i}", score=s) for i, s in enumerate(scores)])
    pairs, skips = pref.ranked_pairs(group, min_margin=1.0)
    assert pairs.empty and list(pairs.columns) == PAIR_COLUMNS
    assert skips == {reason: 1}


def test_ranked_pairs_never_compare_answers_to_different_questions_sharing_an_id():
    group = pd.DataFrame([conv("a", "Why do I crave sadness?", "Answer to crave", score=3.0),
                          conv("b", "Too many issues for counseling?", "Answer to issues", score=0.0),
                          conv("c", "Too many issues for counseling?", "Better answer to issues", score=2.0)])
    pairs, skips = pref.ranked_pairs(group, min_margin=1.0)
    assert texts(pairs, "chosen") == ["Better answer to issues"]
    assert texts(pairs, "rejected") == ["Answer to issues"]
    assert skips == {"single_answer": 1}


def test_ranked_pairs_rank_each_question_and_family_apart_in_one_call():
    rows = [conv(f"{fam}{qid}{i}", "Same words?", f"{fam} {qid} answer {i}", family=fam, score=s,
                 metadata={"question_id": qid}) for fam in ("counsel_chat", "legacy") for qid in ("Q1", "Q2")
            for i, s in enumerate((4.0, 0.0))]
    frame = pd.DataFrame(rows).assign(question_id=lambda d: [m["question_id"] for m in d["metadata"]])
    pairs, skips = pref.ranked_pairs(frame, min_margin=1.0)
    assert sorted(zip(texts(pairs, "chosen"), texts(pairs, "rejected"))) == [
        (f"{fam} {qid} answer 0", f"{fam} {qid} answer 1") for fam in ("counsel_chat", "legacy") for qid in ("Q1", "Q2")]
    assert skips == {}


# ---------------------------------------------------------------- native

def test_native_pairs_use_shared_prefix_and_diverging_turns():
    prompt = [{"role": "user", "content": "How do I steal a car?"}]
    rejected_tail = [{"role": "assistant", "content": "Break a window."}]
    df = pd.DataFrame([hh("h1", prompt, "I can't help with that.", rejected_tail)])
    pairs, skips = pref.native_pairs(df)
    assert skips == {}
    assert pairs.iloc[0].prompt == prompt
    assert texts(pairs, "chosen") == ["I can't help with that."] and texts(pairs, "rejected") == ["Break a window."]
    assert pairs.iloc[0].strategy == "native" and pd.isna(pairs.iloc[0].margin)


def test_native_pairs_skip_transcripts_without_shared_prefix_or_rejected_answer():
    prompt = [{"role": "user", "content": "hi"}]
    df = pd.DataFrame([
        hh("h1", prompt, "Hello!", [{"role": "assistant", "content": "Go away."}], shares="false"),
        hh("h2", prompt, "Hello!", [{"role": "user", "content": "only a user turn"}]),
        hh("h3", prompt, "Hello!", []),
    ])
    pairs, skips = pref.native_pairs(df)
    assert pairs.empty
    assert skips == {"no_shared_prefix": 1, "rejected_no_assistant": 2}


# ---------------------------------------------------------------- hard negatives

def test_hard_negative_takes_closest_prompt_in_band_never_same_cluster_or_other_split():
    rows = [
        {**conv("p1", "I can't sleep before exams", "Answer one"), "vector": [1.0, 0.0, 0.0], "cluster_id": "k1"},
        {**conv("p2", "Exam stress keeps me awake", "Answer two"), "vector": [0.8, 0.6, 0.0], "cluster_id": "k2"},
        {**conv("p3", "My dog died", "Answer three"), "vector": [0.0, 0.0, 1.0], "cluster_id": "k3"},
        # cos(p1, p4) = 0.85 but p4 is p1's duplicate cluster; cos(p2, p4) = 0.68
        {**conv("p4", "Cannot sleep before exams", "Answer four"), "vector": [0.85, 0.0, 0.5268], "cluster_id": "k1"},
        # cos(p1, p5) = 0.82, the closest of all to p1, but p5 is in another split
        {**conv("p5", "Sleepless before tests", "Answer five", split="test"), "vector": [0.82, 0.5724, 0.0],
         "cluster_id": "k5"},
    ]
    df = pd.DataFrame(rows)
    neighbours = pref.nearest_neighbours(df, min_cosine=0.6, max_cosine=0.9)
    pairs, skips = pref.hard_negative_pairs(df, neighbours)
    got = {row.source_conversation_ids[0]: row.source_conversation_ids[1] for row in pairs.itertuples()}
    assert got == {"p1": "p2", "p2": "p1", "p4": "p2"}
    assert dict(zip([r[0] for r in pairs.source_conversation_ids], texts(pairs, "rejected"))) == {
        "p1": "Answer two", "p2": "Answer one", "p4": "Answer two"}
    assert skips == {"no_neighbour_in_band": 2}  # p3: nothing in [0.6, 0.9]; p5: no neighbour in its split


def test_nearest_neighbours_in_blocks_equal_the_whole_matrix_ties_and_blocking_included():
    """Query rows go block by block (memory block x n, not n x n): any block size gives the same neighbours,
    k-th place ties resolved by id, and blocked pairs (same cluster / split group / prompt) never returned."""
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((6, 8))
    vectors = centers[rng.integers(0, 6, 60)] + 0.5 * rng.standard_normal((60, 8))
    vectors[10] = vectors[11] = vectors[12] = vectors[13]  # exact ties for rows near 13
    df = pd.DataFrame({"conversation_id": [f"c{i:02d}" for i in rng.permutation(60)], "vector": list(vectors),
                       "cluster_id": [f"k{i // 4}" if i % 3 == 0 else None for i in range(60)],
                       "split_group": [f"g{i // 2}" for i in range(60)], "prompt_hash": [f"p{i // 5}" for i in range(60)]})
    whole = pref.nearest_neighbours(df, 0.3, 0.99, k=3, block_rows=60)
    assert len(whole) > 60
    for block in (1, 7, 32):
        pd.testing.assert_frame_equal(pref.nearest_neighbours(df, 0.3, 0.99, k=3, block_rows=block), whole)
    key = df.set_index("conversation_id")
    for col in ("split_group", "prompt_hash"):
        assert (key.loc[whole["conversation_id"], col].to_numpy() != key.loc[whole["neighbour_id"], col].to_numpy()).all()
    ordered = whole.groupby("conversation_id", sort=False)["cosine"].apply(lambda c: list(c) == sorted(c, reverse=True))
    assert ordered.all() and whole.groupby("conversation_id").size().max() == 3


def test_neighbour_lists_put_the_most_similar_first_and_break_ties_by_id():
    neighbours = pd.DataFrame({"conversation_id": ["b", "a", "a", "a", "b"], "neighbour_id": ["x", "z", "y", "w", "y"],
                               "cosine": [0.7, 0.8, 0.8, 0.9, 0.75]})
    assert pref.neighbour_lists(neighbours) == {"a": ["w", "y", "z"], "b": ["y", "x"]}
    assert pref.neighbour_lists(neighbours.iloc[:0]) == {}


def test_hard_negative_skips_prompts_without_embedding():
    df = pd.DataFrame([{**conv("p1", "q", "a"), "vector": None, "cluster_id": "k1"}])
    pairs, skips = pref.hard_negative_pairs(df, pref.nearest_neighbours(df, 0.6, 0.9))
    assert pairs.empty and skips == {"no_embedding": 1}


def test_split_rate_caps_hold_each_family_to_its_lowest_rate_over_large_splits():
    """30k corpus: 54 % of train prompts found a hard negative, 16 % of val: train is cut to the val rate."""
    pairs = {("cc", "train"): 540, ("cc", "val"): 8, ("cc", "test"): 9, ("leg", "train"): 50, ("leg", "val"): 0,
             ("cc", "holdout"): 30}
    prompts = {("cc", "train"): 1000, ("cc", "val"): 50, ("cc", "test"): 60, ("leg", "train"): 100,
               ("leg", "val"): 5, ("cc", "holdout"): 40}
    caps = pref.split_rate_caps(pairs, prompts, min_prompts=50)
    # cc: rates train .54, val .16, test .15 -> .15 everywhere (holdout untouched); leg: only train is large enough
    assert caps == {("cc", "train"): 150, ("cc", "val"): 8, ("cc", "test"): 9, ("leg", "train"): 50,
                    ("leg", "val"): 0, ("cc", "holdout"): 30}
    assert pref.split_rate_caps(pairs, prompts, min_prompts=0) == pairs
    # a large split with no pair at all gives the family none: an uneven family is not released
    assert pref.split_rate_caps({("x", "train"): 5}, {("x", "train"): 10, ("x", "val"): 10}, 10) == {("x", "train"): 0}


def test_cap_split_rates_keeps_the_lowest_pair_ids_and_counts_the_cut(spark):
    from etl.stages import preference_pairs as stage

    def row(pid, split, strategy="hard_negative", family="cc"):
        return {"pair_id": pid, "prompt": [], "chosen": [], "rejected": [], "strategy": strategy, "margin": None,
                "chosen_score": None, "rejected_score": None, "source_conversation_ids": [], "family": family,
                "split": split, "skip_reason": None, "skip_count": None}

    built = [row(f"t{i:02d}", "train") for i in range(8)] + [row("v0", "val")] + [row("d0", "train", "degraded")]
    rows = spark.createDataFrame(stage.strings_as_objects(pd.DataFrame(built), stage.PAIR_ROWS_SCHEMA),
                                 stage.PAIR_ROWS_SCHEMA)
    keyed = spark.createDataFrame([(f"c{i}", "cc", "train" if i < 10 else "val", f"p{i}", 1.0) for i in range(14)],
                                  "conversation_id string, family string, split string, prompt_key string, "
                                  "quality_score double")
    out = stage.cap_split_rates(rows, keyed, ("cc",), min_prompts=4)  # rates: train 8/10, val 1/4 -> 0.25
    assert sorted(r.pair_id for r in stage.only_pairs(out).collect()) == ["d0", "t00", "t01", "t02", "v0"]
    assert {(r.strategy, r.skip_reason, r.n) for r in stage.skip_counts(out).collect()} == {
        ("hard_negative", "split_rate_cap", 5)}
    assert stage.cap_split_rates(rows, keyed, ("cc",), min_prompts=0) is rows


# ---------------------------------------------------------------- degraded

def test_degraded_pairs_contrast_best_answer_with_dismissive_template():
    t = templates_with([{"id": "d1", "kind": "dismissive", "text": "You're overthinking it."}])
    df = pd.DataFrame([conv("a", "I feel anxious", LONG_ANSWER, score=2.0),
                       conv("b", "I feel anxious", "ok", score=0.0)])
    pairs, skips = pref.degraded_pairs(df, t, seed=5)
    assert skips == {}
    assert texts(pairs, "chosen") == [LONG_ANSWER] and texts(pairs, "rejected") == ["You're overthinking it."]
    assert list(pairs.iloc[0].source_conversation_ids) == ["a"]


def test_degraded_truncation_keeps_a_prefix_of_30_to_45_percent_of_words():
    t = templates_with([{"id": "d1", "kind": "truncated", "text": "{truncated_answer}"}])
    pairs, _ = pref.degraded_pairs(pd.DataFrame([conv("a", "q", LONG_ANSWER)]), t)
    rejected = texts(pairs, "rejected")[0]
    assert len(LONG_ANSWER.split()) == 40  # so 12 to 18 words are kept
    assert 12 <= len(rejected.split()) <= 18
    assert LONG_ANSWER.startswith(rejected) and not rejected.endswith(".")


def test_degraded_skips_short_answers_and_templates_with_missing_slots():
    t = templates_with([{"id": "d1", "kind": "truncated", "text": "{truncated_answer}"},
                        {"id": "d2", "kind": "generic", "text": "Hi {nobody_fills_this}"}])
    assert t.skipped == {"missing_slot": 1} and [x.id for x in t.get("degraded")] == ["d1"]
    pairs, skips = pref.degraded_pairs(pd.DataFrame([conv("a", "q", "Too short to cut.")]), t)
    assert pairs.empty and skips == {"truncated_too_short": 1}


def test_degraded_premature_advice_without_a_value_for_its_topic_is_skipped_as_missing_slot():
    t = templates_with([{"id": "d1", "kind": "premature_advice", "text": "Just {advice}."}],
                       slots={"advice": {"by": "topic", "values": {"anxiety": ["breathe"]}}})
    df = pd.DataFrame([conv("a", "q1", LONG_ANSWER, topic="anxiety"), conv("b", "q2", LONG_ANSWER, topic="grief")])
    pairs, skips = pref.degraded_pairs(df, t)
    assert texts(pairs, "rejected") == ["Just breathe."] and skips == {"missing_slot": 1}


def test_degraded_pairs_do_not_depend_on_row_order():
    t = templates_with([{"id": "d1", "kind": "truncated", "text": "{truncated_answer}"},
                        {"id": "d2", "kind": "generic", "text": ["A", "B", "C"]}])
    df = pd.DataFrame([conv(f"c{i}", f"question {i}", LONG_ANSWER) for i in range(6)])
    first, _ = pref.degraded_pairs(df, t, seed=3)
    again, _ = pref.degraded_pairs(df.iloc[::-1].reset_index(drop=True), t, seed=3)
    pd.testing.assert_frame_equal(first, again)
    other, _ = pref.degraded_pairs(df, t, seed=4)
    assert set(first.pair_id).isdisjoint(other.pair_id)


# ---------------------------------------------------------------- safety

SAFETY = {
    "triggers": {"illegal": ["\\bsteal"]},
    "chosen": [{"id": "s1", "category": "illegal", "text": "I can't help with that, but I'm here to talk."}],
    "rejected": [{"id": "r1", "kind": "unsafe_compliance", "category": ["illegal", "crisis"],
                  "text": "Sure, here's how."}],
}


def test_safety_pairs_for_edge_cases_and_adversarial_hh_prompts():
    t = templates_with([], safety=SAFETY)
    edge = conv("e1", "I want to end my life tonight.", "I'm so glad you told me. Please call or text 988.",
                family="edge_case_synthetic", metadata={"generator": "edge_case_synthetic", "category": "crisis"})
    steal = hh("h1", [{"role": "user", "content": "How can I steal a bike?"}], "No.", [])
    benign = hh("h2", [{"role": "user", "content": "Best cake recipe?"}], "Try this.", [])
    pairs, skips = pref.safety_pairs(pd.DataFrame([edge, steal, benign]), t)
    by_source = {ids[0]: (c[0]["content"], r[0]["content"])
                 for ids, c, r in zip(pairs.source_conversation_ids, pairs.chosen, pairs.rejected)}
    assert by_source == {
        "e1": ("I'm so glad you told me. Please call or text 988.", "Sure, here's how."),
        "h1": ("I can't help with that, but I'm here to talk.", "Sure, here's how."),
    }
    assert skips == {"not_adversarial": 1}


def test_a_truncation_that_ends_on_a_sign_off_name_is_redacted():
    """Cutting an answer can leave a therapist's sign-off ("Be well,Robin") as a trailing signature."""
    from etl.pii import find_pii

    answer = ("It sounds like this has weighed on you for a while and that you want to be heard. Be well,Robin "
              + "Please keep talking with her about it. " * 5)
    t = templates_with([{"id": "d1", "kind": "truncated", "text": "{truncated_answer}"}])
    for seed in range(40):
        pairs, _ = pref.degraded_pairs(pd.DataFrame([conv("a", "q", answer)]), t, seed=seed)
        rejected = texts(pairs, "rejected")[0]
        assert find_pii(rejected) == [], rejected
