"""Embedding-LSH candidates: a rerun from the stored state finds exactly the pairs of a full comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.dedup import embedding_lsh
from etl.dedup.hyperplanes import hyperplane_bands

BITS, TABLES, NUM_PERM, SEED = 3, 3, 128, 6


def texts(seed: int, n: int, prefix: str):
    """n unit vectors around 4 centres (so buckets and cosines vary), MinHash-like signatures sharing values."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, 16))
    vectors = centres[rng.integers(0, 4, n)] + 0.8 * rng.standard_normal((n, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    signatures = rng.integers(0, 3, size=(n, NUM_PERM))
    return pd.DataFrame({"text_hash": [f"{prefix}{i:03d}" for i in range(n)], "vector": list(vectors),
                         "signature": list(signatures), "bands": list(hyperplane_bands(vectors, BITS, TABLES))})


def test_new_text_scan_matches_brute_force():
    base = texts(1, 40, "t")
    new = base.iloc[[3, 8, 21, 30]]
    new_keys = pd.DataFrame([{"field": "answer", "band": b, "key": int(r.bands[b]), "text_hash": r.text_hash}
                             for r in new.itertuples() for b in range(TABLES)])
    scan = embedding_lsh.new_pairs_fn(new_keys, new[["text_hash", "vector"]].reset_index(drop=True), 0.2)
    got = pd.concat(list(scan(iter([base.iloc[:25], base.iloc[25:]]))))
    expected = {}
    for n in new.itertuples():
        for r in base.itertuples():
            if r.text_hash != n.text_hash and (np.asarray(r.bands) == np.asarray(n.bands)).any():
                a, b = r.vector.astype(np.float64)[None], n.vector.astype(np.float64)[None]
                cos = float(np.einsum("ij,ij->i", a, b)[0])  # per pair, as the in-bucket scan scores it
                if cos >= 0.2:
                    expected[tuple(sorted((r.text_hash, n.text_hash)))] = cos
    pairs = {(r.h1, r.h2): r.cosine for r in got.drop_duplicates(["h1", "h2"]).itertuples()}
    assert pairs.keys() == expected.keys() and len(expected) >= 10
    assert all(pairs[k] == expected[k] for k in expected)  # the same per-pair arithmetic as the bucket scan
    assert (got["h1"] < got["h2"]).all() and (got["field"] == "answer").all()


def _fields(table: pd.DataFrame, not_prompt: tuple = ()) -> pd.DataFrame:
    """Every text is an answer; every third (by its number) also a prompt, unless listed in `not_prompt`."""
    prompts = table[(table["text_hash"].str[1:].astype(int) % 3 == 0) & ~table["text_hash"].isin(not_prompt)]
    return pd.concat([table.assign(field="answer"), prompts.assign(field="prompt")])


def _frames(spark, table: pd.DataFrame, not_prompt: tuple = ()):
    fields = _fields(table, not_prompt)
    text_fields = spark.createDataFrame(fields[["field", "text_hash"]])
    vec_bands = spark.createDataFrame(pd.DataFrame({
        "text_hash": table["text_hash"], "bands": table["bands"].map(lambda b: [int(x) for x in b]),
        "vector": table["vector"].map(lambda v: [float(x) for x in v])}),
        "text_hash string, bands array<bigint>, vector array<float>")
    sigs = spark.createDataFrame(pd.DataFrame({"text_hash": table["text_hash"],
                                               "signature": table["signature"].map(lambda s: [int(x) for x in s])}),
                                 "text_hash string, signature array<bigint>")
    return text_fields, vec_bands, sigs


def _sizes(fields: pd.DataFrame) -> dict:
    rows = [(r.field, b, int(r.bands[b])) for r in fields.itertuples() for b in range(TABLES)]
    return pd.Series(rows).value_counts().to_dict()


def brute_force(fields: pd.DataFrame, max_size: int, min_cosine: float) -> dict:
    """The definition, pair by pair in numpy: same field, a shared bucket of at most max_size members of that
    field, cosine >= min_cosine (float64 of the float32 vectors), Jaccard = share of equal signature positions."""
    sizes, out = _sizes(fields), {}
    for field, group in fields.groupby("field"):
        recs = sorted(group.itertuples(), key=lambda r: r.text_hash)
        for i, a in enumerate(recs):
            for b in recs[i + 1:]:
                if not any(a.bands[t] == b.bands[t] and sizes[(field, t, int(a.bands[t]))] <= max_size
                           for t in range(TABLES)):
                    continue
                cos = float(np.einsum("ij,ij->i", a.vector.astype(np.float64)[None], b.vector.astype(np.float64)[None])[0])
                if cos >= min_cosine:
                    out[(field, a.text_hash, b.text_hash)] = (float(np.mean(a.signature == b.signature)), cos)
    return out


def as_dict(df) -> dict:
    return {(r["field"], r["h1"], r["h2"]): (r["jaccard"], r["cosine"]) for r in df.collect()}


def test_reruns_from_state_equal_the_definition(spark, make_config, tmp_path):
    """Run 1 full; run 2 with 8 texts gone and 9 new (buckets turn templates, templates shrink back); run 3 removes
    texts only and drops one text from one field: each equals a brute-force comparison of its own text set."""
    max_size, min_cos = 6, 0.3
    cfg = make_config(raw_root=str(tmp_path), dedup__hyperplane_bits=BITS, dedup__hyperplane_tables=TABLES,
                      dedup__max_bucket_size=max_size, dedup__candidate_min_cosine=min_cos, dedup__num_perm=NUM_PERM)
    pool = texts(SEED, 81, "t")
    first, added = pool.iloc[:72], pool.iloc[72:].assign(text_hash=[f"n{i:03d}" for i in range(9)])
    second = pd.concat([first.drop(index=range(0, 72, 9)), added], ignore_index=True)  # 8 texts gone, 9 new
    third = second.iloc[3:].reset_index(drop=True)  # 3 more gone, nothing new
    want1 = brute_force(_fields(first), max_size, min_cos)
    want2 = brute_force(_fields(second), max_size, min_cos)
    want3 = brute_force(_fields(third, ("t030",)), max_size, min_cos)
    kept_texts = set(second["text_hash"])
    # what makes a rerun non-trivial happens here: stored pairs whose shared bucket became a template, and pairs of
    # two old texts that only a reopened bucket (shrunk below max_size) brings back
    assert any(k[1] in kept_texts and k[2] in kept_texts and k not in want2 for k in want1)
    assert any(k[1].startswith("t") and k[2].startswith("t") and k not in want1 for k in want2)
    assert any(k[1].startswith("n") or k[2].startswith("n") for k in want2) and len(want2) >= 20

    params = "test-params"
    pairs, counts = embedding_lsh.candidates(spark, cfg, *_frames(spark, first), params, "r1")
    assert counts["embedding_lsh"] == "full" and as_dict(pairs) == want1
    pairs, counts = embedding_lsh.candidates(spark, cfg, *_frames(spark, second), params, "r2")
    assert counts["embedding_lsh"] == "incremental" and counts["embedding_lsh_new_texts"] == 12  # 9 + 3 prompts
    assert as_dict(pairs) == want2
    pairs, counts = embedding_lsh.candidates(spark, cfg, *_frames(spark, third, ("t030",)), params, "r3")
    assert counts["embedding_lsh"] == "incremental" and counts["embedding_lsh_new_texts"] == 0
    assert as_dict(pairs) == want3

    _, counts = embedding_lsh.candidates(spark, cfg, *_frames(spark, third), "other-params", "r4")
    assert counts["embedding_lsh"] == "full"  # other settings never reuse the state
