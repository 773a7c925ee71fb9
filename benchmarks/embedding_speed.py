"""Embedding settings on real answers: texts/s of plain `SentenceTransformer.encode` and agreement with the default.

    python benchmarks/embedding_speed.py --raw-root ../shared/data/raw --n 1024 --out out/embed_speed.json
    # on a GPU machine without the corpus: texts and CPU fp32 reference vectors made here, a local model folder
    python benchmarks/embedding_speed.py --n 3072 --save-texts T.json --save-reference R.npy --variants fp32-256
    python benchmarks/embedding_speed.py --device cuda --model DIR --texts-file T.json --reference R.npy \
        --variants fp32-256,auto-256,auto-256-plain,fp16-256,auto-128,auto-256-b256 --repeat 3

Each variant embeds the same texts (counsel_chat answers + hh_rlhf prompts, the texts dedup embeds most) in one
process after a warm-up batch; `cos_min` / `cos_p01` compare its vectors with the default's (fp32, 256 tokens),
and `pair_agreement` is the share of text pairs whose "cosine >= 0.9" verdict is unchanged (the dedup threshold).
A variant is only adopted if the labelled dedup benchmark keeps its recall (benchmarks/dedup_eval.py).
Variant names: `<precision>-<max tokens>[-b<batch>][-plain]`; `-plain` calls `SentenceTransformer.encode` on the
same loaded model instead of `etl.dedup.embedder.embed_texts` (what the wrapper costs). `--reference` compares every
variant with vectors saved elsewhere (e.g. CPU fp32) instead of the first variant.
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


def parse_variant(name: str, base: EmbeddingConf) -> tuple[EmbeddingConf, bool]:
    """`bf16-256`, `auto-128-b256`, `fp16-256-plain` -> (conf, plain)."""
    parts = name.split("-")
    plain = parts[-1] == "plain"
    conf = replace(base, precision=parts[0], max_seq_length=int(parts[1]))
    for extra in parts[2:]:
        if extra.startswith("b"):
            conf = replace(conf, batch_size=int(extra[1:]))
        elif extra == "unsorted":
            conf = replace(conf, sort_by_length=False)
    return conf, plain


def run_variant(texts: list[str], conf: EmbeddingConf, plain: bool = False, repeat: int = 1) -> tuple[np.ndarray, float]:
    """(vectors, best wall seconds of `repeat` timed passes) after a warm-up batch."""
    def once():
        if not plain:
            return embedder.embed_texts(texts, conf)
        batch = embedder.pick_batch_size(conf.batch_size, embedder.pick_device(conf.device))
        return embedder.load_model(conf).encode(texts, batch_size=batch, normalize_embeddings=True,
                                                convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    embedder.embed_texts(texts[:64], conf)  # load + warm-up
    best, vectors = float("inf"), None
    for _ in range(max(1, repeat)):
        _sync(conf)
        start = time.perf_counter()
        vectors = once()
        _sync(conf)
        best = min(best, time.perf_counter() - start)
    return vectors, best


def _sync(conf: EmbeddingConf) -> None:
    if conf.device != "cpu":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-root", default="../shared/data/raw")
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--out", default="out/embed_speed.json")
    parser.add_argument("--variants", default="fp32-256,bf16-256,int8-256,fp32-128,bf16-128")
    parser.add_argument("--device", default="cpu", choices=embedder.DEVICES)
    parser.add_argument("--model", default=EmbeddingConf().model, help="package name, local folder or hub name")
    parser.add_argument("--repeat", type=int, default=1, help="timed passes per variant (the best is kept)")
    parser.add_argument("--texts-file", help="JSON list of texts instead of sampling the corpus")
    parser.add_argument("--save-texts", help="write the sampled texts here (JSON)")
    parser.add_argument("--reference", help=".npy vectors to compare every variant with (same texts)")
    parser.add_argument("--save-reference", help="write the first variant's vectors here (.npy)")
    args = parser.parse_args(argv)
    if args.texts_file:
        with open(args.texts_file, encoding="utf-8") as f:
            texts = json.load(f)[: args.n]
    else:
        texts = real_texts(args.raw_root, args.n)
    if args.save_texts:
        with open(args.save_texts, "w", encoding="utf-8") as f:
            json.dump(texts, f)
    base = EmbeddingConf(device=args.device, precision="fp32", model=args.model)
    device = embedder.pick_device(args.device)
    env = {"device": device, "auto_precision": embedder.pick_precision("auto", device), "threads": int(os.cpu_count() or 0)}
    if device == "cuda":
        import torch

        env["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps(env), flush=True)
    results = []
    reference = np.load(args.reference) if args.reference else None
    for name in args.variants.split(","):
        conf, plain = parse_variant(name, base)
        vectors, wall = run_variant(texts, conf, plain, args.repeat)
        row = {"variant": name, "texts": len(texts), "wall_s": round(wall, 3), "texts_per_s": round(len(texts) / wall, 1)}
        if reference is None:
            reference = vectors
            if args.save_reference:
                np.save(args.save_reference, vectors)
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
        json.dump({"results": results, **env}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
