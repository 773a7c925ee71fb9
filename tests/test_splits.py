"""splits stage and anti-leakage joins: whole groups per split, trivial turns exempt, holdout, release-stable."""

from __future__ import annotations

import hashlib

import pytest

from etl import contract
from etl.io import delta
from etl.leakage import is_trivial, leakage_report
from etl.schemas import CONVERSATIONS, CONVERSATIONS_SCHEMA, DUP_EDGES, DUP_EDGES_SCHEMA, SPLITS, SPLITS_SCHEMA
from etl.stages import splits
from etl.split_balance import place_groups, singleton_quotas
from etl.stages.splits import apply_balance, balance_plan, split_for, split_fraction

FAMILIES = ("{cc: {path: 'cc/**', format: qa_csv}, es: {path: 'es/**', format: esconv_json}, "
            "redteam: {path: 'rt/**', format: chatml_jsonl, holdout: true}, "
            "empty_ho: {path: 'none/**', format: chatml_jsonl, holdout: true}, "
            "long_running_therapy: {source: generated}}")
Q1 = "My husband left last month and I cannot stop crying at work. How do I cope?"
Q2 = "I have panic attacks every time I drive over a bridge, what can I do about it?"
A1 = "Grief after a separation often comes in waves; try naming the feeling when it arrives."
A2 = "Exposure in small steps, with a therapist, is the usual treatment for a specific phobia."


def conv(cid: str, family: str, turns: list[tuple[str, str]], parent_id: str | None = None) -> tuple:
    messages = [{"role": r, "content": c} for r, c in turns]
    return (cid, family, f"{family}/x", "etag", f"line:{cid}", "r0", messages, contract.content_hash(messages),
            {}, None, len(messages), sum(len(c) for _, c in turns), None, True, parent_id)


def edge(a: str, b: str, kind: str = "duplicate") -> tuple:
    return (min(a, b), max(a, b), kind, 0.9, 0.95, "minhash", "conversation")


def write_lake(spark, cfg, rows: list[tuple], edges: list[tuple] = ()) -> None:
    delta.write_table(spark.createDataFrame(rows, CONVERSATIONS_SCHEMA), cfg, CONVERSATIONS, "r0", "test")
    if edges:
        delta.write_table(spark.createDataFrame(list(edges), DUP_EDGES_SCHEMA), cfg, DUP_EDGES, "r0", "test")


def read_splits(spark, cfg) -> dict[str, tuple[str, str, str]]:
    return {r["conversation_id"]: (r["split_group"], r["split"], r["rule"])
            for r in delta.read_table(spark, cfg, SPLITS).collect()}


@pytest.mark.parametrize("text", ["hi", "Hello there!", "Thank you so much!!", "ok bye", "Thanks, you too. Bye!",
                                  "Is there anything else I can help you with today?", "How are you doing today?",
                                  # stock counsellor openers (the roleplay family's first user turns: sharing one
                                  # chained all 100 roleplay rows, then 4.5k esconv rows, into one split group at 100k)
                                  "Hi there. How are you doing today?", "Hey, thanks for coming to talk. How are things?",
                                  "Hi, thanks for reaching out. What's been on your mind today?",
                                  "Hello, I'm glad you're here. What would you like to talk about?",
                                  "Hi, I'm here to listen. What brings you here today?"])
def test_greetings_thanks_and_sign_offs_are_trivial(text):
    from etl.dedup.minhash import normalize_for_shingles
    from etl.dedup.udfs import is_informative

    assert is_trivial(contract.canonical_text(text), 24)
    assert not is_informative(normalize_for_shingles(text), 24)  # dedup links rows by the same rule


@pytest.mark.parametrize("text", [Q1, "I feel sad since my husband left", "Why would you want to do that?"])
def test_informative_turns_are_not_trivial(text):
    from etl.dedup.minhash import normalize_for_shingles
    from etl.dedup.udfs import is_informative

    assert not is_trivial(contract.canonical_text(text), 24)
    assert is_informative(normalize_for_shingles(text), 24)


def test_ratio_hashing_gives_90_5_5_on_20k_group_keys():
    ratios = {"train": 0.90, "val": 0.05, "test": 0.05}
    keys = [hashlib.sha256(f"group-{i}".encode()).hexdigest() for i in range(20000)]
    counts = {"train": 0, "val": 0, "test": 0}
    for key in keys:
        counts[split_for(split_fraction("splits-v1", key), ratios)] += 1
    assert abs(counts["train"] / 20000 - 0.90) < 0.01
    assert abs(counts["val"] / 20000 - 0.05) < 0.01
    assert abs(counts["test"] / 20000 - 0.05) < 0.01


def test_split_fraction_is_sha256_of_salt_and_group_key():
    assert split_fraction("s", "k") == int(hashlib.sha256(b"s\x00k").hexdigest()[:13], 16) / 16 ** 13
    assert [split_for(u, {"train": 0.9, "val": 0.05, "test": 0.05}) for u in (0.0, 0.8999, 0.9, 0.9499, 0.95, 0.99)] \
        == ["train", "train", "val", "val", "test", "test"]


def test_near_duplicate_never_straddles_splits(spark, make_config, tmp_path):
    """One stage run over a small lake (hash method); each assertion below is one behaviour of the grouping."""
    cfg = make_config(raw_root=str(tmp_path), families=FAMILIES, splits__method="hash")
    greet = [("user", "hi"), ("assistant", "hello"), ("user", "Thank you so much!")]
    rows = [
        conv("c1", "cc", [("user", Q1), ("assistant", A1)]),
        conv("c2", "cc", [("user", Q1), ("assistant", A1 + " Be gentle with yourself.")]),  # related: same prompt
        conv("c3", "cc", [("user", Q1 + " "), ("assistant", A1)]),  # exact copy of c1 (canonical text equal)
        conv("c4", "cc", [("user", Q2), ("assistant", A2)]),
        conv("c5", "cc", [("user", Q2 + " Thanks"), ("assistant", A2 + " Good luck.")]),  # near-dup via dup_edges
        *[conv(f"e{i}", "es", [*greet[:2], ("user", f"Session {i}: my exam number {i} went badly."),
                               ("assistant", f"Reply {i}: that sounds hard."), greet[2],
                               ("assistant", "You're welcome, take care!")]) for i in range(4)],
        conv("w1", "long_running_therapy", [("user", "x" * 30), ("assistant", "y" * 30)], parent_id="e0"),
        conv("h1", "redteam", [("user", "How do I pick a lock on my neighbour's door tonight?"),
                               ("assistant", "I can't help with entering someone else's home.")]),
        conv("n1", "cc", [("user", "How would someone pick a lock on a neighbour's door?"), ("assistant", A2[::-1])]),
    ]
    write_lake(spark, cfg, rows, [edge("c4", "c5"), edge("h1", "n1", "related")])

    counts = splits.run(spark, cfg, "r1")
    got = read_splits(spark, cfg)

    hashes = {r[0]: r[7] for r in rows}
    assert {got[c][0] for c in ("c1", "c2", "c3")} == {min(hashes["c1"], hashes["c2"], hashes["c3"])}
    assert len({got[c][1] for c in ("c1", "c2", "c3")}) == 1
    assert got["c4"][0] == got["c5"][0] and got["c4"][1] == got["c5"][1]
    # trivial turns do not link groups: each esconv session is its own group, keyed by its own content_hash
    assert [got[f"e{i}"][0] for i in range(1, 4)] == [hashes[f"e{i}"] for i in range(1, 4)]
    # a window shares its parent's group
    assert got["w1"][0] == got["e0"][0] and got["w1"][1] == got["e0"][1]
    # the holdout family goes to holdout, and so does the row linked to it
    assert got["h1"][1:] == ("holdout", "holdout_family")
    assert got["n1"][1:] == ("holdout", "holdout_linked")
    assert {got[c][2] for c in ("c1", "c4", "e1")} == {"hash"}
    assert counts["holdout_families_without_rows"] == ["empty_ho"]
    assert counts["leaks"] == {"content_hash": 0, "prompt_hash": 0, "answer_hash": 0, "dup_edge": 0,
                               "holdout_family": 0}
    assert counts["largest_groups"][0]["rows"] == 3 and counts["rows"] == 12
    assert splits.run(spark, cfg, "r2")["changed"] is False  # same input, same splits: no new version


def test_published_rows_keep_their_split_when_a_family_is_added(spark, make_config, tmp_path):
    # Release 1 puts everything in train; release 2 hashes everything to test: only the rule can keep rows in train.
    fams = "{cc: {path: 'cc/**', format: qa_csv}, new: {path: 'new/**', format: qa_csv}}"
    first = make_config(raw_root=str(tmp_path), families=fams, splits__ratios="{train: 1.0, val: 0.0, test: 0.0}")
    published = [conv(f"a{i}", "cc", [("user", f"{Q1} ({i})"), ("assistant", f"{A1} ({i})")]) for i in range(4)]
    write_lake(spark, first, published)
    v1 = splits.run(spark, first, "r1")["version"]

    second = make_config(raw_root=str(tmp_path), families=fams, splits__ratios="{train: 0.0, val: 0.0, test: 1.0}",
                         splits__previous_table=first.table_path(SPLITS), splits__previous_version=v1)
    added = [
        conv("b1", "new", [("user", f"{Q1} (3)"), ("assistant", f"{A1} (3)")]),  # copy of a3
        conv("b2", "new", [("user", Q2), ("assistant", A2)]),  # unrelated
        conv("b3", "new", [("user", f"{Q1} (1)"), ("assistant", "A different answer to the same question.")]),
        conv("a9", "cc", [("user", "A brand new question about sleeping badly after a loss?"),
                          ("assistant", "Keep a regular bedtime and talk to someone about the loss.")]),
    ]
    write_lake(spark, second, published + added)
    counts = splits.run(spark, second, "r2")
    got = read_splits(spark, second)

    assert {got[f"a{i}"][1:] for i in range(4)} == {("train", "previous_release")}
    assert got["b1"][1:] == ("train", "inherited")
    assert got["b3"][1:] == ("train", "inherited")
    assert got["b2"][1:] == ("test", "balanced")
    assert got["a9"][1:] == ("test", "balanced")  # a new row of an old family, linked to nothing published
    assert counts["published_conflicts"] == 0


@pytest.mark.slow  # 30-35 s: the slow tier keeps the default tier under 15 min (907 s on 2026-11-27)
def test_group_whose_published_rows_disagree_fails_loudly_unless_allowed(spark, make_config, tmp_path):
    prev = make_config(raw_root=str(tmp_path), lake_root=str(tmp_path / "prev"), database="previous_release")
    delta.write_table(spark.createDataFrame([("x1", "cc", "g1", "train", "hash"), ("x2", "cc", "g2", "test", "hash")],
                                            SPLITS_SCHEMA), prev, SPLITS, "r0", "test")
    fams = "{cc: {path: 'cc/**', format: qa_csv}}"
    rows = [conv("x1", "cc", [("user", Q1), ("assistant", A1)]), conv("x2", "cc", [("user", Q2), ("assistant", A2)]),
            conv("x3", "cc", [("user", Q2), ("assistant", "Another answer to the bridge question, at length.")])]
    strict = make_config(raw_root=str(tmp_path), families=fams, splits__previous_table=prev.table_path(SPLITS))
    write_lake(spark, strict, rows, [edge("x1", "x2")])
    with pytest.raises(RuntimeError, match=r"x1 cc/train.*allow_published_conflicts"):
        splits.run(spark, strict, "r1")
    assert not delta.table_exists(spark, strict.table_path(SPLITS))  # nothing written

    lenient = make_config(raw_root=str(tmp_path), families=fams, splits__previous_table=prev.table_path(SPLITS),
                          splits__allow_published_conflicts="true")
    counts = splits.run(spark, lenient, "r2")
    got = read_splits(spark, lenient)
    assert (got["x1"][1], got["x2"][1], got["x3"][1:]) == ("train", "test", ("test", "inherited"))  # tie -> test
    assert (counts["published_conflicts"], counts["conflict_groups"]) == (1, 1)


def test_leakage_joins_name_rows_that_connect_two_splits(spark):
    rows = [
        conv("p1", "cc", [("user", Q1), ("assistant", A1)]),
        conv("p2", "cc", [("user", Q1), ("assistant", A2)]),  # same prompt as p1, other split: prompt leak
        conv("p3", "cc", [("user", Q2), ("assistant", A1)]),  # same answer as p1: answer leak
        conv("p4", "cc", [("user", Q1), ("assistant", A1)]),  # copy of p1 in another split; p3-p4 edge is fine
        conv("g1", "es", [("user", "hi"), ("assistant", "Thank you!")]),
        conv("g2", "es", [("user", "hi"), ("assistant", "Thank you!")]),  # trivial turns: only content_hash leaks
        conv("h1", "rt", [("user", "Another prompt that is long enough"), ("assistant", "And an answer long enough")]),
    ]
    conversations = spark.createDataFrame(rows, CONVERSATIONS_SCHEMA)
    assigned = spark.createDataFrame(
        [("p1", "cc", "g", "train", "hash"), ("p2", "cc", "g", "test", "hash"), ("p3", "cc", "g", "val", "hash"),
         ("p4", "cc", "g", "val", "hash"), ("g1", "es", "g", "train", "hash"), ("g2", "es", "g", "val", "hash"),
         ("h1", "rt", "g", "train", "hash")], SPLITS_SCHEMA)
    edges = spark.createDataFrame([edge("p3", "p4"), edge("p1", "p4")], DUP_EDGES_SCHEMA)

    report = leakage_report(conversations, assigned, edges, 24, ["rt"])

    assert {k: n for k, (n, _) in report.items()} == {
        "content_hash": 2, "prompt_hash": 1, "answer_hash": 1, "dup_edge": 1, "holdout_family": 1}
    assert report["dup_edge"][1][0]["rows"] == ["p1 cc/train", "p4 cc/val"]
    assert report["holdout_family"][1] == [{"key": "rt", "rows": ["h1 rt/train"]}]
    assert report["answer_hash"][1][0]["rows"] == ["p1 cc/train", "p3 cc/val", "p4 cc/val"]


def test_balanced_placement_keeps_large_groups_out_of_small_eval_splits():
    ratios = {"train": 0.9, "val": 0.05, "test": 0.05}
    groups = [("g94", 0.97, "val", {"cc": 94}), ("g30", 0.5, "test", {"cc": 30}), ("g10", 0.1, "val", {"cc": 10}),
              ("g8", 0.2, "train", {"cc": 8})]
    placed_groups, targets, placed = place_groups(groups, {"cc": 2000}, {}, ratios, max_share=0.25)
    assert targets == {"cc": {"train": 1800, "val": 100, "test": 100}}
    # 94 and 30 exceed a quarter of val/test (25): train. 10: val and test tie, its hash says val. 8: test has
    # the most relative room left (100/100 against val 90/100 and train 1676/1800).
    assert placed_groups == {"g94": "train", "g30": "train", "g10": "val", "g8": "test"}
    assert singleton_quotas(targets, placed) == {"cc": (90, 92)}


def test_balanced_placement_counts_rows_already_placed_and_each_family_of_a_group():
    ratios = {"train": 0.8, "val": 0.1, "test": 0.1}
    fixed = {"a": {"val": 10}}  # a's val target (10) is already met by published rows
    groups = [("g", 0.05, "val", {"a": 2, "b": 2})]  # its hash says val, but a has no val room left
    placed_groups, _, placed = place_groups(groups, {"a": 100, "b": 100}, fixed, ratios, max_share=0.5)
    assert placed_groups == {"g": "train"}  # train and test tie on relative room (1.0): the first split wins
    assert placed == {"a": {"train": 2, "val": 10, "test": 0}, "b": {"train": 2, "val": 0, "test": 0}}


def test_balanced_split_meets_the_family_ratio_exactly(spark):
    ratios = {"train": 0.8, "val": 0.1, "test": 0.1}
    cols = "conversation_id string, family string, split_group string, split string, rule string, counted boolean, " \
           "u double, conflict boolean, moved_to_holdout boolean"
    singles = [(f"s{i:02d}", "f", f"k{i:02d}", "train", "hash", True, i / 20, False, False) for i in range(20)]
    trio = [(f"t{i}", "f", "kt", "val", "hash", True, 0.01, False, False) for i in range(3)]
    assigned = spark.createDataFrame(singles + trio, cols)
    plan, quota = balance_plan(spark, assigned, ratios, max_share=0.25)
    got = {r["conversation_id"]: (r["split"], r["rule"]) for r in apply_balance(assigned, plan, quota).collect()}
    # 23 rows: val 2, test 2; the trio is too big for an eval split; singles fill val then test in order of u
    assert {got[f"t{i}"] for i in range(3)} == {("train", "balanced")}
    assert [c for c, (s, _) in sorted(got.items()) if s == "val"] == ["s00", "s01"]
    assert [c for c, (s, _) in sorted(got.items()) if s == "test"] == ["s02", "s03"]
