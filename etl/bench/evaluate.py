"""Scoring labelled pairs against a method's output: the dedup stage's tables or a baseline's pairs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import pandas as pd

from etl.bench.baselines import component_labels

SameFn = Callable[[str, str], bool]


def stage_predictor(edges: pd.DataFrame, clusters: pd.DataFrame) -> SameFn:
    """Duplicate per the dedup stage: a `duplicate` edge between the two, or the same duplicate cluster."""
    dup = edges[edges["kind"] == "duplicate"]
    pairs = {frozenset(p) for p in zip(dup["conversation_id_a"], dup["conversation_id_b"])}
    cluster = dict(zip(clusters["conversation_id"], clusters["cluster_id"]))

    def same(a: str, b: str) -> bool:
        return frozenset((a, b)) in pairs or (a in cluster and cluster.get(a) == cluster.get(b))

    return same


def component_predictor(ids: list[str], pairs_a: Iterable[str], pairs_b: Iterable[str]) -> SameFn:
    """Duplicate per a baseline: both ends in the same connected component of its pairs."""
    labels = component_labels(ids, list(pairs_a), list(pairs_b))

    def same(a: str, b: str) -> bool:
        return a in labels and labels.get(a) == labels.get(b)

    return same


def prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4)}


def score_labelled(pairs: list[dict], same: SameFn) -> dict:
    """Per kind (and overall) P/R/F1 over labelled pairs, plus false merges per negative type."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})
    negatives: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # negative type -> [merged, total]
    for p in pairs:
        hit = same(p["a"], p["b"])
        for key in (p["kind"], "ALL"):
            if p["label"] and hit:
                counts[key]["tp"] += 1
            elif p["label"]:
                counts[key]["fn"] += 1
            elif hit:
                counts[key]["fp"] += 1
        if not p["label"]:
            negatives[p["negative"]][0] += hit
            negatives[p["negative"]][1] += 1
    per_kind = {k: prf(**v) for k, v in counts.items()}
    false_merges = {k: {"merged": m, "pairs": n, "rate": round(m / n, 4) if n else 0.0}
                    for k, (m, n) in sorted(negatives.items())}
    return {"per_kind": per_kind, "negatives": false_merges}


def format_table(results: dict[str, dict], kinds: list[str]) -> str:
    """Per-kind P/R/F1 side by side for every method; results: method -> score_labelled output + seconds."""
    methods = list(results)
    head = f"{'kind':<22}" + "".join(f"{m[:24]:>26}" for m in methods)
    sub = f"{'':<22}" + "".join(f"{'P     R     F1':>26}" for _ in methods)
    lines = [head, sub]
    for kind in [*kinds, "ALL"]:
        cells = []
        for m in methods:
            r = results[m]["per_kind"].get(kind, {})
            cells.append(f"{r.get('precision', 0):>14.3f}{r.get('recall', 0):>6.3f}{r.get('f1', 0):>6.3f}")
        lines.append(f"{kind:<22}" + "".join(cells))
    negs = sorted({n for m in methods for n in results[m]["negatives"]})
    for neg in negs:
        cells = [f"{results[m]['negatives'].get(neg, {}).get('rate', 0):>26.4f}" for m in methods]
        lines.append(f"{'false merge ' + neg:<22}" + "".join(cells))
    lines.append(f"{'wall s':<22}" + "".join(f"{results[m].get('time', {}).get('wall_s', 0):>26.1f}" for m in methods))
    lines.append(f"{'cpu s (process tree)':<22}" + "".join(
        f"{results[m].get('time', {}).get('cpu_s', 0):>26.1f}" for m in methods))
    return "\n".join(lines)
