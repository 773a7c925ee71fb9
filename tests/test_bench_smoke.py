"""Benchmark helpers without Spark: the scale generator is deterministic and its truth matches the files it wrote
(read back with the project's readers); the legacy/2020 pair matching builds the expected pairs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from etl.bench.pairs import QaRow, hard_negative_pairs, positive_pairs
from etl.bench.perturb import sentences, truncate, typo

REPO = Path(__file__).resolve().parents[1]
SHARED_RAW = (REPO / ".." / "shared" / "data" / "raw").resolve()
needs_corpus = pytest.mark.skipif(not SHARED_RAW.is_dir(), reason="shared corpus not present")


@pytest.fixture(scope="module")
def pool():
    from etl.bench.corpus import load_pool

    return load_pool(str(SHARED_RAW))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read_tree(raw: Path) -> dict[tuple[str, str], object]:
    from etl.config import load_config
    from etl.readers import ReaderLimits, read_object
    from etl.stages.inventory import route

    cfg = load_config(str(REPO / "conf" / "shared_corpus.yaml"), [f"raw_root={raw}"])
    records = {}
    for path in sorted(p for p in raw.rglob("*") if p.is_file()):
        key = str(path.relative_to(raw))
        family, _, _ = route(key, cfg.families, cfg.ignore)
        with open(path, "rb") as fh:
            for rec in read_object(family.format, fh, family.options, ReaderLimits()):
                records[(key, rec.locator)] = (family.name, rec)
    return records


@needs_corpus
def test_scale_generator_is_deterministic_for_a_seed(tmp_path, pool):
    from etl.bench.scale import generate

    first = generate(str(SHARED_RAW), 200, str(tmp_path / "a"), seed=3, extra=0.05, pool=pool)
    second = generate(str(SHARED_RAW), 200, str(tmp_path / "b"), seed=3, extra=0.05, pool=pool)
    generate(str(SHARED_RAW), 200, str(tmp_path / "c"), seed=4, extra=0.05, pool=pool)
    assert first["counts"] == second["counts"]
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    a.pop("generator.json"), b.pop("generator.json")  # holds the output path
    assert a == b
    assert a["truth.jsonl"] != _files(tmp_path / "c")["truth.jsonl"]
    assert sum(v for k, v in first["counts"].items() if k.startswith("raw:")) == 200
    assert sum(v for k, v in first["counts"].items() if k.startswith("raw_extra:")) == 10


@needs_corpus
def test_scale_truth_matches_what_the_readers_find(tmp_path, pool):
    from etl.bench.scale import generate, read_truth
    from etl.contract import content_hash

    summary = generate(str(SHARED_RAW), 200, str(tmp_path), seed=1, pool=pool)
    truth = read_truth(summary["truth"])
    records = _read_tree(tmp_path / "raw")
    assert len(records) == len(truth) == 200
    assert all(records[(t["source_key"], t["locator"])][0] == t["family"] for t in truth)
    good = {t["index"]: rec for t in truth for fam, rec in [records[(t["source_key"], t["locator"])]] if not rec.error}
    hashes = {i: content_hash(rec.messages) for i, rec in good.items()}
    exact = [t for t in truth if t["kind"] == "exact" and t["index"] in good and t["dup_of"] in good]
    assert exact and all(hashes[t["index"]] == hashes[t["dup_of"]] for t in exact)
    typos = [t for t in truth if t["perturbation"] in ("typo", "truncated") and t["index"] in good]
    assert all(hashes[t["index"]] != hashes[t["dup_of"]] for t in typos)
    roots = {}
    for t in truth:  # a content hash belongs to one truth group: no accidental duplicates between groups
        if t["index"] in good:
            roots.setdefault(hashes[t["index"]], set()).add(t["root"])
    assert all(len(r) == 1 for r in roots.values())
    planted = [t for t in truth if t["pii_value"] and t["index"] in good and t["kind"] != "near"]
    assert planted and all(
        any(t["pii_value"] in m["content"] for m in good[t["index"]].messages) for t in planted)


def test_a_sentence_stream_uses_every_sentence_once_before_any_repeats():
    from etl.bench.scale import SentenceStream

    stream = SentenceStream(["a", "b", "c", "b", "d"], random.Random(0))
    first, second = [stream.take() for _ in range(4)], [stream.take() for _ in range(4)]
    assert sorted(first) == sorted(second) == ["a", "b", "c", "d"]


def _char_shingles(text: str) -> frozenset:
    from etl.dedup.minhash import normalize_for_shingles

    t = normalize_for_shingles(text)
    return frozenset(t[i:i + 5] for i in range(max(1, len(t) - 4)))


@needs_corpus
@pytest.mark.slow  # benchmark tooling, 20-30 s: the slow tier (CI runs both tiers)
def test_novel_conversations_past_the_real_pool_are_not_copies_of_each_other(pool):
    """Past ~6.6k conversations the real pool is used up and rows are recombined; drawn with replacement, a 30k
    corpus had 2,828 answer pairs at char-5-gram Jaccard >= 0.7 and 10.5k such prompt pairs between rows its
    truth calls distinct (they chained a 100k corpus into one split group holding 61 % of the rows)."""
    from etl.bench.scale import Generator

    gen = Generator(pool, seed=0)
    rows = [gen.draw(i) for i in range(9000)]
    novel = [r for r in rows if r["kind"] == "novel" and r.get("related_to") is None]
    assert len(novel) > 1500
    for role in ("user", "assistant"):
        texts = ["\n".join(m["content"] for m in r["messages"] if m["role"] == role) for r in novel]
        by_sentence: dict[str, list[int]] = {}
        for k, text in enumerate(texts):
            for sentence in set(sentences(text)):
                by_sentence.setdefault(sentence, []).append(k)
        pairs = {(a, b) for ks in by_sentence.values() for i, a in enumerate(ks) for b in ks[i + 1:]}
        shingles = {k: _char_shingles(texts[k]) for pair in pairs for k in pair}
        near = [p for p in pairs if len(shingles[p[0]] & shingles[p[1]]) >= 0.7 * len(shingles[p[0]] | shingles[p[1]])]
        assert len(near) <= len(novel) // 500, (role, len(near), [texts[k][:80] for k in near[0]] if near else None)


@needs_corpus
@pytest.mark.slow  # benchmark tooling, 20-30 s: the slow tier (CI runs both tiers)
def test_novel_sessions_share_no_supporter_turn_that_would_chain_split_groups(pool):
    """The splits stage links rows sharing an informative assistant turn (or first user turn). One-sentence
    supporter turns taken whole from the sentence stream recurred across sessions: at 20k base rows the multi-turn
    families formed a 421-row linked component (2,487 at 100k, whose windows failed the 100k distribution gate)."""
    from etl.bench.scale import KIND_EXACT, KIND_NEAR, Generator
    from etl.leakage import informative_hash

    gen = Generator(pool, seed=0)
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    rows = []
    for i in range(20000):
        conv = gen.draw(i)
        if conv["family"] not in ("esconv_failed", "support_chat") or conv["kind"] in (KIND_EXACT, KIND_NEAR):
            continue  # planted copies are meant to link
        rows.append(i)
        messages = conv["messages"]
        first = next((m["content"] for m in messages if m["role"] == "user"), "")
        keys = {("p", informative_hash(first, 24))} | {
            ("a", informative_hash(m["content"], 24)) for m in messages if m["role"] == "assistant"}
        for key in keys:
            if key[1] is not None:
                parent[find(i)] = find(key)
    sizes: dict = {}
    for i in rows:
        sizes[find(i)] = sizes.get(find(i), 0) + 1
    assert len(rows) > 3000 and max(sizes.values()) <= 10, max(sizes.values())


def test_positive_pairs_match_title_and_therapist_name_before_the_comma():
    new = [QaRow("n1", "counsel_chat", "Can I stop worrying?", "Sherry Katz, LCSWCouples and Family Therapist, LCSW", "A"),
           QaRow("n2", "counsel_chat", "Can I stop worrying?", "Lee KingI use an integrative approach", "B"),
           QaRow("n3", "counsel_chat", "Can I stop worrying?", "Robin Landwehr, DBH, LPCC", "C"),
           QaRow("n4", "counsel_chat", "Why am I sad", "Sherry Katz, LCSWCouples", "D"),
           QaRow("n5", "counsel_chat", "Why am I sad", "Sherry Katz, LCSWCouples", "D, but edited")]
    legacy = [QaRow("l1", "counsel_chat_legacy", "can i stop worrying", "Sherry Katz, LCSW", "<p>A</p>"),
              QaRow("l2", "counsel_chat_legacy", "Can I stop  worrying?", "Lee King, LPC", "B"),
              QaRow("l3", "counsel_chat_legacy", "Why am I sad?", "Sherry Katz", "D"),
              QaRow("l4", "counsel_chat_legacy", "A question only legacy has", "Sherry Katz", "E"),
              QaRow("l5", "counsel_chat_legacy", "Can I stop worrying?", "Jane Doe, LMFT", "F")]
    pairs, stats = positive_pairs(new, legacy)
    assert pairs == [("n1", "l1"), ("n2", "l2")]
    assert stats == {"legacy_rows": 5, "legacy_matched": 2, "legacy_unmatched_title": 1,
                     "legacy_unmatched_therapist": 1, "legacy_ambiguous": 1}


def test_hard_negatives_are_other_therapists_on_the_same_title():
    rows = [QaRow("n1", "counsel_chat", "Can I stop worrying?", "Sherry Katz, LCSWCouples", "A"),
            QaRow("n2", "counsel_chat", "Can I stop worrying?", "Lee KingI use an integrative approach", "B"),
            QaRow("l1", "counsel_chat_legacy", "can i stop worrying", "Sherry Katz, LCSW", "A"),
            QaRow("l2", "counsel_chat_legacy", "Can I stop worrying?", "Lee King, LPC", "B"),
            QaRow("x1", "counsel_chat", "Another question", "Robin Landwehr, DBH", "C")]
    assert hard_negative_pairs(rows) == [
        ("l1", "l2", "counsel_chat_legacy|counsel_chat_legacy"),
        ("l1", "n2", "counsel_chat|counsel_chat_legacy"),
        ("l2", "n1", "counsel_chat|counsel_chat_legacy"),
        ("n1", "n2", "counsel_chat|counsel_chat"),
    ]


def test_truncate_keeps_at_least_80_percent_of_the_words_and_typo_edits_2_to_3_percent():
    text = " ".join(f"word{i}" for i in range(100))
    kept = [len(truncate(text, random.Random(s)).split()) for s in range(20)]
    assert min(kept) >= 80 and max(kept) <= 95
    rng = random.Random(0)
    letters = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(1000))  # 20-30 edits
    distances = [_edit_distance(letters, typo(letters, random.Random(s))) for s in range(5)]
    assert all(15 <= d <= 60 for d in distances), distances  # an edit costs 1 (a swap 2), a few cancel out


def _edit_distance(a: str, b: str, band: int = 80) -> int:
    """Levenshtein distance within a diagonal band (exact while the distance stays below the band)."""
    big = len(a) + len(b)
    prev = {j: j for j in range(min(len(b), band) + 1)}
    for i in range(1, len(a) + 1):
        cur = {}
        for j in range(max(0, i - band), min(len(b), i + band) + 1):
            if j == 0:
                cur[j] = i
                continue
            cur[j] = min(prev.get(j, big) + 1, cur.get(j - 1, big) + 1, prev.get(j - 1, big) + (a[i - 1] != b[j - 1]))
        prev = cur
    return prev.get(len(b), big)


@pytest.mark.slow  # benchmark tooling, 20-30 s: the slow tier (CI runs both tiers)
def test_mllib_baseline_past_its_time_limit_is_cancelled_and_reported_as_a_lower_bound(spark, make_config, tmp_path):
    import pandas as pd
    from test_splits import conv, write_lake

    from etl.bench import scale_eval

    cfg = make_config(raw_root=str(tmp_path))
    words = "sad tired lonely work sleep family money friend anxious calm".split()
    rows = [conv(f"c{i}", "cc", [("user", " ".join(random.Random(i).sample(words, 6))), ("assistant", "ok then")])
            for i in range(40)]
    write_lake(spark, cfg, rows)
    frame = pd.DataFrame({"conversation_id": [f"c{i}" for i in range(40)], "root": [f"c{i}" for i in range(40)],
                          "index": range(40), "kind": "original", "perturbation": None, "dup_of": None})
    cut = scale_eval.mllib_baseline(spark, cfg, frame, 0.8, 5, time_limit_s=0.05)
    assert cut["finished"] is False and cut["time"]["wall_s"] < 30 and "precision" not in cut
    done = scale_eval.mllib_baseline(spark, cfg, frame, 0.8, 5, time_limit_s=600)
    assert done["finished"] is True and "precision" in done
