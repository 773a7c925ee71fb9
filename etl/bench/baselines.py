"""The two near-duplicate baselines the dedup stage is measured against, and cluster-level pair metrics.

- word-set Jaccard: the placeholder we replace. Jaccard of the lower-cased word sets of whole conversations over
  ALL pairs, >= threshold (0.8). Computed here with sparse matrix products in row chunks, which is far faster than
  the Python double loop it stands for, so its time is a lower bound for that approach.
- Spark MLlib `MinHashLSH.approxSimilarityJoin` over HashingTF word-set vectors of the same text, same threshold
  (Jaccard distance <= 1 - threshold). MLlib ORs `num_tables` single-hash tables and verifies with exact Jaccard.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from etl.dedup.components import connected_components

_WORD = re.compile(r"\w+")


def word_set(text: str) -> set[str]:
    """Lower-cased word tokens of a text, as a set."""
    return set(_WORD.findall((text or "").lower()))


def conversation_text(messages) -> str:
    """All turns of a conversation joined by newlines (the text both baselines compare)."""
    return "\n".join(str(m["content"]) for m in messages)


def jaccard_all_pairs(texts: list[str], threshold: float, chunk: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, jaccard) for every pair i < j whose word-set Jaccard is >= threshold (exact, all pairs)."""
    from scipy import sparse

    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, text in enumerate(texts):
        for w in word_set(text):
            rows.append(i)
            cols.append(vocab.setdefault(w, len(vocab)))
    n = len(texts)
    x = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, max(1, len(vocab))))
    sizes = np.asarray(x.sum(axis=1)).ravel()
    xt = x.T.tocsc()
    out_i, out_j, out_s = [], [], []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        inter = (x[start:stop] @ xt).toarray()
        union = sizes[start:stop, None] + sizes[None, :] - inter
        sim = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        ii, jj = np.nonzero(sim >= threshold)
        keep = jj > ii + start
        out_i.append(ii[keep] + start)
        out_j.append(jj[keep])
        out_s.append(sim[ii[keep], jj[keep]])
    if not out_i:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)


def mllib_similarity_join(docs: DataFrame, threshold: float, num_tables: int = 5, seed: int = 1,
                          num_features: int = 1 << 18) -> DataFrame:
    """docs(id, text) -> (a, b, jaccard) pairs a < b with word-set Jaccard >= threshold, by MLlib MinHashLSH."""
    from pyspark.ml.feature import HashingTF, MinHashLSH

    tokens = F.array_distinct(F.filter(F.split(F.lower("text"), r"[^\p{L}\p{N}_]+"), lambda t: t != ""))
    words = docs.select("id", tokens.alias("tokens")).where(F.size("tokens") > 0)  # MinHash needs a non-zero vector
    vectors = HashingTF(inputCol="tokens", outputCol="features", numFeatures=num_features, binary=True).transform(words)
    model = MinHashLSH(inputCol="features", outputCol="hashes", numHashTables=num_tables, seed=seed).fit(vectors)
    joined = model.approxSimilarityJoin(vectors, vectors, 1.0 - threshold + 1e-9, distCol="distance")
    return (joined.where(F.col("datasetA.id") < F.col("datasetB.id"))
            .select(F.col("datasetA.id").alias("a"), F.col("datasetB.id").alias("b"),
                    (1.0 - F.col("distance")).alias("jaccard")))


def component_labels(ids: list[str], pairs_a, pairs_b, weights=None) -> dict[str, str]:
    """id -> id of its connected component's smallest member, over the given pairs (no size cap)."""
    index = {cid: i for i, cid in enumerate(ids)}
    a = np.fromiter((index[x] for x in pairs_a), dtype=np.int64, count=len(pairs_a))
    b = np.fromiter((index[x] for x in pairs_b), dtype=np.int64, count=len(pairs_b))
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=np.float64)
    labels, _ = connected_components(len(ids), a, b, w, np.asarray(ids), max_size=max(1, len(ids)))
    return {cid: ids[labels[i]] for i, cid in enumerate(ids)}


def pair_counting(predicted: pd.Series, truth: pd.Series) -> dict:
    """Pair-counting precision/recall of a predicted clustering against a true one (both indexed by item id).

    A pair is predicted when both items share a predicted label, true when they share a true label.
    """
    frame = pd.DataFrame({"p": predicted, "t": truth}).dropna()
    choose2 = lambda s: float((s * (s - 1) // 2).sum())
    tp = choose2(frame.groupby(["p", "t"]).size())
    pred = choose2(frame.groupby("p").size())
    true = choose2(frame.groupby("t").size())
    precision = tp / pred if pred else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"true_pairs": int(true), "predicted_pairs": int(pred), "tp_pairs": int(tp),
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
