"""ONNX Runtime against torch for the embedding model on this CPU, one thread each (as in one Spark task).

    pip install onnxruntime onnx           # not project dependencies: only this comparison needs them
    python benchmarks/onnx_speed.py --raw-root ../shared/data/raw --n 512 --out out/onnx_speed.json

The model (all-MiniLM-L6-v2 from the configured package) is exported with `torch.onnx.export` into `--work`, then
the same texts (benchmarks/embedding_speed.py's sample: counsel_chat answers + hh_rlhf transcripts), longest first
in batches of 32 at 256 tokens, go through: torch fp32 and bf16 (sentence-transformers), ONNX Runtime fp32 (all
graph optimisations), ORT fp32 with onnxruntime.transformers' BERT fusions, and ORT dynamic int8 (per channel).
Per variant: texts/s of the best of `--repeat` warm passes and the smallest cosine to the torch fp32 vectors.
sentence-transformers' own ONNX backend needs `optimum`, which cannot be installed beside the pinned transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embedding_speed import real_texts  # noqa: E402

from etl.config import EmbeddingConf  # noqa: E402
from etl.dedup.embedder import resolve_model_path  # noqa: E402

BATCH, MAX_TOKENS = 32, 256
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export(model, path: str) -> None:
    import torch

    class Hidden(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    sample = model.tokenizer(["hello there", "a second, longer sentence"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "hidden")}
    torch.onnx.export(Hidden(model[0].auto_model.eval()), tuple(sample[k] for k in INPUTS), path,
                      input_names=list(INPUTS), output_names=["hidden"], dynamic_axes=axes, opset_version=17,
                      dynamo=False)


def ort_encoder(session, tokenizer):
    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for lo in range(0, len(texts), BATCH):
            enc = tokenizer(texts[lo:lo + BATCH], padding=True, truncation=True, max_length=MAX_TOKENS,
                            return_tensors="np")
            hidden = session.run(None, {k: enc[k].astype(np.int64) for k in INPUTS})[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out)
    return encode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-root", default="../shared/data/raw")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--work", default="out/onnx_speed")
    parser.add_argument("--out", default="out/onnx_speed.json")
    args = parser.parse_args(argv)
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.transformers import optimizer
    except ImportError as exc:
        print(f"onnx_speed: {exc}; pip install onnxruntime onnx", file=sys.stderr)
        return 2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    os.makedirs(args.work, exist_ok=True)
    texts = sorted(real_texts(args.raw_root, args.n), key=len, reverse=True)
    path = resolve_model_path(EmbeddingConf().model)
    fp32 = SentenceTransformer(path, device="cpu")
    fp32.max_seq_length = MAX_TOKENS
    bf16 = SentenceTransformer(path, device="cpu").to(torch.bfloat16)
    bf16.max_seq_length = MAX_TOKENS
    plain, fused, int8 = (os.path.join(args.work, f) for f in ("model.onnx", "fused.onnx", "int8.onnx"))
    export(fp32, plain)
    optimizer.optimize_model(plain, model_type="bert", num_heads=12, hidden_size=384).save_model_to_file(fused)
    quantize_dynamic(plain, int8, weight_type=QuantType.QInt8, per_channel=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

    def session(p):
        return ort.InferenceSession(p, options, providers=["CPUExecutionProvider"])

    def st_encode(model):
        return lambda t: model.encode(t, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)

    variants = {"torch-fp32": st_encode(fp32), "torch-bf16": st_encode(bf16),
                "ort-fp32": ort_encoder(session(plain), fp32.tokenizer),
                "ort-fp32-fused": ort_encoder(session(fused), fp32.tokenizer),
                "ort-int8": ort_encoder(session(int8), fp32.tokenizer)}
    reference, results = None, []
    for name, encode in variants.items():
        encode(texts[:BATCH])  # warm-up
        best, vectors = float("inf"), None
        for _ in range(args.repeat):
            start = time.perf_counter()
            vectors = np.asarray(encode(texts), dtype=np.float32)
            best = min(best, time.perf_counter() - start)
        reference = vectors if reference is None else reference
        row = {"variant": name, "texts": len(texts), "texts_per_s": round(len(texts) / best, 1),
               "cos_min_vs_torch_fp32": round(float((vectors * reference).sum(1).min()), 5)}
        results.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"threads": 1, "batch": BATCH, "max_tokens": MAX_TOKENS, "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
