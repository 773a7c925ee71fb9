"""Issue 3 acceptance: near-duplicate detection measured on real data and on a labelled benchmark.

    python benchmarks/dedup_eval.py --raw-root ../shared/data/raw --work out/dedup_eval --out out/dedup_eval/report

(a) real: counsel_chat (2020) and counsel_chat_legacy ingested into their own lake (inventory + ingest stages with
    conf/shared_corpus.yaml restricted to the two families), then the dedup stage. Positives: the same therapist's
    answer to the same question title in both scrapes (etl.bench.pairs); hard negatives: different therapists'
    answers to the same title. Recall = positives that are `duplicate` edges or share a duplicate cluster; false
    merge rate = hard negatives sharing a duplicate cluster. Targets: recall >= 0.99, false merges <= 0.5 %.
(b) labelled: every 2020 answer plus perturbed copies of several kinds and their hard negatives
    (etl.bench.labelled), dedup stage vs the word-set Jaccard placeholder vs MLlib MinHashLSH, same run.
Writes <out>/dedup_eval.json and prints the tables; `--set dedup.x=y` overrides the dedup conf for both parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etl.bench import baselines, evaluate, labelled
from etl.bench.measure import measure
from etl.bench.pairs import QaRow, hard_negative_pairs, norm_key, positive_pairs
from etl.config import load_config, to_dict

log = logging.getLogger("dedup_eval")
REAL_FAMILIES = ("counsel_chat", "counsel_chat_legacy")
REPO = Path(__file__).resolve().parents[1]


def run_dedup(spark, cfg, run_id: str, name: str) -> tuple[dict, dict]:
    from etl.stages import dedup

    with measure(name, spark) as t:
        counts = dedup.run(spark, cfg, run_id)
    return counts, t


def stage_tables(spark, cfg):
    from etl.io import delta

    edges = delta.read_table(spark, cfg, "dup_edges").toPandas()
    clusters = delta.read_table(spark, cfg, "dup_clusters").toPandas()
    return edges, clusters


def run_baselines(spark, ids: list[str], texts: list[str], threshold: float, tables: int) -> dict:
    """Word-set Jaccard (all pairs) and MLlib MinHashLSH over the same conversation texts, timed."""
    out = {}
    with measure("wordset_jaccard", spark) as t:
        i, j, _ = baselines.jaccard_all_pairs(texts, threshold)
    out["wordset_jaccard"] = {"same": evaluate.component_predictor(ids, [ids[x] for x in i], [ids[x] for x in j]),
                              "pairs": len(i), "time": t}
    docs = spark.createDataFrame(list(zip(ids, texts)), "id string, text string")
    with measure("mllib_minhashlsh", spark) as t:
        pairs = baselines.mllib_similarity_join(docs, threshold, num_tables=tables).toPandas()
    out["mllib_minhashlsh"] = {"same": evaluate.component_predictor(ids, pairs["a"], pairs["b"]),
                               "pairs": len(pairs), "time": t}
    return out


def _edge_lookup(edges):
    return {frozenset(p): (k, j, c) for p, k, j, c in zip(zip(edges["conversation_id_a"], edges["conversation_id_b"]),
                                                          edges["kind"], edges["jaccard"], edges["cosine"])}


def _answer(conv_by_id: dict, cid: str) -> str:
    return "\n".join(m["content"] for m in conv_by_id[cid]["messages"] if m["role"] == "assistant")


def _prompt(conv_by_id: dict, cid: str) -> str:
    return next((m["content"] for m in conv_by_id[cid]["messages"] if m["role"] == "user"), "")


def print_examples(title: str, pairs: list[tuple[str, str]], conv_by_id: dict, edges, limit: int) -> list[dict]:
    """Show up to `limit` pairs with the edge evidence between them; returns them for the JSON report."""
    lookup = _edge_lookup(edges)
    shown = []
    print(f"\n--- {title}: {len(pairs)} (showing {min(limit, len(pairs))})")
    for a, b in pairs[:limit]:
        wa, wb = set(norm_key(_answer(conv_by_id, a)).split()), set(norm_key(_answer(conv_by_id, b)).split())
        item = {"a": a, "b": b, "edge": lookup.get(frozenset((a, b))),
                "answer_wordset_jaccard": round(len(wa & wb) / max(1, len(wa | wb)), 3),
                "same_prompt": norm_key(_prompt(conv_by_id, a)) == norm_key(_prompt(conv_by_id, b)),
                "answer_a": _answer(conv_by_id, a)[:300], "answer_b": _answer(conv_by_id, b)[:300]}
        shown.append(item)
        print(f"[{a[:8]} {b[:8]}] edge={item['edge']} answer word-set J={item['answer_wordset_jaccard']} "
              f"same prompt={item['same_prompt']}\n  A: {item['answer_a'][:200]!r}\n  B: {item['answer_b'][:200]!r}")
    return shown


def part_real(spark, args, overrides: list[str]) -> dict:
    """(a): ingest the two scrapes, run dedup, score title+therapist positives and hard negatives."""
    from etl.io import delta
    from etl.stages import ingest, inventory

    cfg = load_config(str(REPO / "conf" / "shared_corpus.yaml"), [
        f"raw_root={args.raw_root}", f"lake_root={Path(args.work) / 'lake_real'}",
        f"release_dir={Path(args.work) / 'release_real'}", "database=bench_dedup_real", *overrides])
    cfg = dataclasses.replace(cfg, families=tuple(f for f in cfg.families if f.name in REAL_FAMILIES))
    run_id = f"dedup-eval-real-{int(time.time())}"
    times = {}
    if not args.skip_ingest:
        for name, module in (("inventory", inventory), ("ingest", ingest)):
            with measure(name, spark) as times[name]:
                module.run(spark, cfg, run_id)
    counts, times["dedup"] = run_dedup(spark, cfg, run_id, "dedup")
    conv = (delta.read_table(spark, cfg, "conversations").where(
        "family IN ('counsel_chat', 'counsel_chat_legacy')")
        .selectExpr("conversation_id", "family", "metadata['question_title'] AS title",
                    "metadata['author'] AS author", "messages").toPandas())
    conv_by_id = {r.conversation_id: {"messages": list(r.messages)} for r in conv.itertuples()}
    rows = [QaRow(r.conversation_id, r.family, r.title or "", r.author or "", _answer(conv_by_id, r.conversation_id))
            for r in conv.itertuples()]
    positives, match_stats = positive_pairs([r for r in rows if r.family == "counsel_chat"],
                                            [r for r in rows if r.family == "counsel_chat_legacy"])
    negatives = hard_negative_pairs(rows)
    edges, clusters = stage_tables(spark, cfg)
    ids = conv["conversation_id"].tolist()
    texts = [baselines.conversation_text(conv_by_id[i]["messages"]) for i in ids]
    methods = {"dedup_stage": {"same": evaluate.stage_predictor(edges, clusters), "time": times["dedup"]},
               **run_baselines(spark, ids, texts, args.baseline_threshold, args.mllib_tables)}
    result = {"conversations": len(conv), "positive_pairs": len(positives), "hard_negative_pairs": len(negatives),
              "matching": match_stats, "dedup_counts": counts, "times": times, "methods": {}}
    for name, m in methods.items():
        missed = [(a, b) for a, b in positives if not m["same"](a, b)]
        merged = [(a, b) for a, b, _ in negatives if m["same"](a, b)]
        by_scope: dict[str, list[int]] = {}
        for a, b, scope in negatives:
            by_scope.setdefault(scope, [0, 0])
            by_scope[scope][0] += m["same"](a, b)
            by_scope[scope][1] += 1
        result["methods"][name] = {
            "recall": round(1 - len(missed) / max(1, len(positives)), 4), "missed": len(missed),
            "false_merge_rate": round(len(merged) / max(1, len(negatives)), 4), "false_merges": len(merged),
            "false_merges_by_scope": by_scope, "time": m["time"], "pairs": m.get("pairs")}
        if name == "dedup_stage":
            result["missed_examples"] = print_examples("missed positives (dedup stage)", missed, conv_by_id, edges,
                                                       args.examples)
            result["false_merge_examples"] = print_examples("false merges (dedup stage)", merged, conv_by_id, edges,
                                                            args.examples)
    if args.rerun:
        rerun_counts, rerun_time = run_dedup(spark, cfg, run_id + "-rerun", "dedup_rerun")
        edges2, clusters2 = stage_tables(spark, cfg)
        result["rerun"] = {"texts_embedded": rerun_counts.get("texts_embedded"), "time": rerun_time,
                           "edges_identical": _same_frame(edges, edges2),
                           "clusters_identical": _same_frame(clusters, clusters2)}
    return result


def _same_frame(a, b) -> bool:
    cols = sorted(a.columns)
    key = lambda df: df[cols].astype(str).sort_values(cols).reset_index(drop=True)
    return len(a) == len(b) and key(a).equals(key(b))


def part_labelled(spark, args, overrides: list[str]) -> dict:
    """(b): write originals + perturbed copies as a conversations table, run dedup and both baselines."""
    from etl.io import delta
    from etl.schemas import CONVERSATIONS_SCHEMA

    cfg = load_config(None, [f"lake_root={Path(args.work) / 'lake_labelled'}",
                             f"release_dir={Path(args.work) / 'release_labelled'}", "database=bench_dedup_labelled",
                             *overrides], check_paths=False)
    answers = labelled.load_answers(args.raw_root)
    copies, pairs = labelled.build_benchmark(answers, args.per_kind, args.seed)
    convs = answers + copies
    run_id = f"dedup-eval-labelled-{args.seed}"
    df = spark.createDataFrame(labelled.conversation_rows(convs, run_id), CONVERSATIONS_SCHEMA)
    delta.write_table(df, cfg, "conversations", run_id, "bench")
    counts, dedup_time = run_dedup(spark, cfg, run_id, "dedup")
    edges, clusters = stage_tables(spark, cfg)
    ids = [c["id"] for c in convs]
    texts = [baselines.conversation_text(c["messages"]) for c in convs]
    methods = {"dedup_stage": {"same": evaluate.stage_predictor(edges, clusters), "time": dedup_time},
               **run_baselines(spark, ids, texts, args.baseline_threshold, args.mllib_tables)}
    results = {}
    for name, m in methods.items():
        results[name] = {**evaluate.score_labelled(pairs, m["same"]), "time": m["time"], "pairs": m.get("pairs")}
    print("\n" + evaluate.format_table(results, list(labelled.DUPLICATE_KINDS)))
    conv_by_id = {c["id"]: c for c in convs}
    same = methods["dedup_stage"]["same"]
    misses = [(p["a"], p["b"]) for p in pairs if p["label"] and not same(p["a"], p["b"])]
    merges = [(p["a"], p["b"]) for p in pairs if not p["label"] and same(p["a"], p["b"])]
    return {"conversations": len(convs), "copies": len(copies), "labelled_pairs": len(pairs), "per_kind": args.per_kind,
            "dedup_counts": counts, "methods": results,
            "missed_examples": print_examples("labelled: missed duplicates (dedup stage)", misses, conv_by_id, edges,
                                              args.examples),
            "false_merge_examples": print_examples("labelled: false merges (dedup stage)", merges, conv_by_id, edges,
                                                   args.examples)}


def print_real(real: dict) -> None:
    print(f"\n(a) real data: {real['conversations']} conversations, {real['positive_pairs']} positive pairs, "
          f"{real['hard_negative_pairs']} hard negatives; matching {real['matching']}")
    print(f"{'method':<20}{'recall':>8}{'missed':>8}{'false merge':>13}{'merged':>8}{'wall s':>9}{'cpu s':>8}")
    for name, m in real["methods"].items():
        print(f"{name:<20}{m['recall']:>8.4f}{m['missed']:>8}{m['false_merge_rate']:>13.4f}{m['false_merges']:>8}"
              f"{m['time'].get('wall_s', 0):>9.1f}{m['time'].get('cpu_s', 0):>8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-root", default=str(REPO.parent / "shared" / "data" / "raw"))
    parser.add_argument("--work", default="out/dedup_eval", help="lakes of the two parts")
    parser.add_argument("--out", default="out/dedup_eval/report", help="folder for dedup_eval.json")
    parser.add_argument("--parts", default="real,labelled")
    parser.add_argument("--per-kind", type=int, default=150, help="(b) perturbed copies per duplicate kind")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline-threshold", type=float, default=0.8, help="word-set Jaccard of both baselines")
    parser.add_argument("--mllib-tables", type=int, default=5, help="MinHashLSH numHashTables")
    parser.add_argument("--examples", type=int, default=8, help="misses / false merges printed per list")
    parser.add_argument("--skip-ingest", action="store_true", help="(a) reuse the ingested lake under --work")
    parser.add_argument("--rerun", action="store_true", help="(a) run dedup twice: cache hits and identical tables")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "sentence_transformers", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from etl.spark import get_spark

    spark = get_spark("dedup-eval")
    report = {"args": vars(args), "dedup_conf": to_dict(load_config(None, args.overrides, check_paths=False).dedup)}
    parts = set(args.parts.split(","))
    if "real" in parts:
        report["real"] = part_real(spark, args, args.overrides)
        print_real(report["real"])
    if "labelled" in parts:
        report["labelled"] = part_labelled(spark, args, args.overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dedup_eval.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    if "real" in report:
        print_real(report["real"])
    print(f"\nreport: {out / 'dedup_eval.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
