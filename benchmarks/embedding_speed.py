"""Embedding settings on real answers: texts/s of plain `SentenceTransformer.encode` and agreement with the default.

    python benchmarks/embedding_speed.py --raw-root ../shared/data/raw --n 1024 --out out/embed_speed.json

Each variant embeds the same texts (counsel_chat answers + hh_rlhf prompts, the texts dedup embeds most) in one
process after a warm-up batch; `cos_min` / `cos_p01` compare its vectors with the default's (fp32, 256 tokens),
and `pair_agreement` is the share of text pairs whose "cosine >= 0.9" verdict is unchanged (the dedup threshold).
A variant is only adopted if the labelled dedup benchmark keeps its recall (benchmarks/dedup_eval.py).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import sys
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from etl.config import EmbeddingConf  # noqa: E402
from etl.dedup import embedder  # noqa: E402


def real_texts(raw_root: str, n: int) -> list[str]:
    csv.field_size_limit(1 << 26)
    texts: list[str] = []
    with open(os.path.join(raw_root, "counsel_chat", "20200325_counsel_chat.csv"), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("answerText"):
                texts.append(row["answerText"])
    with gzip.open(os.path.join(raw_root, "hh_rlhf_harmless", "test.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["chosen"][:2000])
    rng = np.random.default_rng(7)
    pick = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    return [texts[i] for i in pick]


def run_variant(texts: list[str], conf: EmbeddingConf) -> tuple[np.ndarray, float]:
    embedder.embed_texts(texts[:64], conf)  # load + warm-up
    start = time.perf_counter()
    vectors = embedder.embed_texts(texts, conf)
    return vectors, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-root", default="../shared/data/raw")
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--out", default="out/embed_speed.json")
    parser.add_argument("--variants", default="fp32-256,bf16-256,int8-256,fp32-128,bf16-128")
    args = parser.parse_args(argv)
    texts = real_texts(args.raw_root, args.n)
    base = EmbeddingConf(device="cpu", precision="fp32")
    variants = {f"{p}-{seq}": replace(base, precision=p, max_seq_length=seq)
                for p in ("fp32", "bf16", "int8") for seq in (256, 128)}
    variants["fp32-256-unsorted"] = replace(base, sort_by_length=False)
    results, reference = [], None
    for name in args.variants.split(","):
        vectors, wall = run_variant(texts, variants[name])
        row = {"variant": name, "texts": len(texts), "wall_s": round(wall, 2), "texts_per_s": round(len(texts) / wall, 1)}
        if reference is None:
            reference = vectors
        else:
            cos = np.sum(vectors * reference, axis=1)
            sim_ref, sim = reference @ reference.T, vectors @ vectors.T
            iu = np.triu_indices(len(texts), 1)
            near_ref, near = sim_ref[iu] >= 0.9, sim[iu] >= 0.9
            row.update({
                "cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 4), "cos_p01": round(float(np.quantile(cos, 0.01)), 4),
                "pairs_ge_0.9_ref": int(near_ref.sum()), "pairs_ge_0.9": int(near.sum()),
                "pair_disagreements": int((near_ref != near).sum()),
            })
        results.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"results": results, "threads": int(os.cpu_count() or 0)}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
