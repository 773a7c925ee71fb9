"""`python -m etl bench --n 2000,10000 --out DIR` (or `./spark-submit.sh bench ...`): the scale benchmark.

For each N: generate the corpus (etl.bench.scale, with `--incremental` of N extra held back), run the pipeline
stages that exist on it (each measured: wall, CPU of the process tree, rows/s = N / wall, peak RSS, shuffle
bytes; see etl.bench.measure), score the dedup stage on the known duplicates, measure the baselines (MLlib
approxSimilarityJoin on the whole corpus, word-set Jaccard on a sample) and the embedding paths in the same run,
then add the held-back data and run every stage again in a fresh process, as a user's rerun is a new
spark-submit (incremental rerun, etl.bench.rerun; `--rerun-process same` keeps it in this one). Writes
`DIR/n<N>/report.json`, `DIR/bench_report.json` and, with several N, `DIR/time_vs_n.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from etl.bench import scale_eval
from etl.bench.measure import measure
from etl.bench.scale import generate, read_truth

log = logging.getLogger(__name__)
SKIP_STAGES = ("upload",)  # never leaves the machine in a benchmark


def bench_config(conf: str, root: Path, n: int, overrides: list[str]):
    """The conf for one N: generated raw tree, its own lake/release/database, no upload, tiny min_records."""
    from etl.config import load_config

    cfg = load_config(conf, [f"raw_root={root / 'corpus' / 'raw'}", f"lake_root={root / 'lake'}",
                             f"release_dir={root / 'release'}", f"database=bench_n{n}", "upload=false", *overrides])
    families = tuple(dataclasses.replace(f, min_records=min(f.min_records, 1)) for f in cfg.families)
    return dataclasses.replace(cfg, families=families)


def add_lake_arguments(parser: argparse.ArgumentParser, stages_default: str = "") -> None:
    """--root, --n, --stages and --conf: the arguments of the scripts that rerun stages on a finished bench lake."""
    parser.add_argument("--root", required=True, help="bench root with corpus/, lake/, release/")
    parser.add_argument("--n", type=int, required=True, help="conversations of the bench root (names the database)")
    parser.add_argument("--stages", default=stages_default, help="comma-separated stage names, run in this order")
    parser.add_argument("--conf", default="conf/shared_corpus.yaml")


def chosen_stages(stages: str) -> list[str]:
    """The stages named in `--stages`, or every available stage but those a benchmark skips when it names none."""
    from etl.cli import available_stages

    return [s for s in stages.split(",") if s] or [s for s in available_stages() if s not in SKIP_STAGES]


def open_bench_lake(tool: str, root: Path, n: int, conf: str, app_name: str):
    """(cfg, spark) over an existing bench root's lake, its tables registered; None, after a one-line message
    naming the folder, when `root` has no lake (the benchmark scripts that rerun stages on a finished lake)."""
    from etl.io import delta
    from etl.spark import get_spark

    if not (root / "lake").is_dir():
        print(f"{tool}: {root / 'lake'} is not a folder; pass a bench root (python -m etl bench --out DIR "
              f"writes DIR/n<N>)", file=sys.stderr)
        return None
    cfg = bench_config(conf, root, n, [])
    spark = get_spark(app_name)
    delta.register_all(spark, cfg)
    return cfg, spark


def run_stages(spark, cfg, stages: list[str], run_id: str, n: int) -> dict:
    """Run each stage measured; a failing stage is recorded (one line) and the next ones still run."""
    from etl.cli import run_stage

    out = {}
    for name in stages:
        with measure(name, spark) as m:
            try:
                counts = run_stage(spark, cfg, name, run_id)
                m["counts"] = {k: v for k, v in counts.items() if isinstance(v, (int, float, str, bool))}
            except Exception as exc:  # noqa: BLE001 - a benchmark reports a broken stage and goes on
                m["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                log.warning("bench: stage %s failed: %s", name, m["error"])
                log.debug("%s", traceback.format_exc())
        m["rows_per_s"] = round(n / m["wall_s"], 1) if m["wall_s"] else None
        out[name] = m
    return out


def _totals(stages: dict) -> dict:
    return {k: round(sum(s.get(k, 0) or 0 for s in stages.values()), 2) for k in ("wall_s", "cpu_s")}


def bench_one(spark, args, n: int) -> dict:
    """Everything for one N; returns its report (also written to DIR/n<N>/report.json)."""
    from etl.cli import available_stages, new_run_id
    from etl.io.delta import register_all

    root = Path(args.out) / f"n{n}"
    if root.exists() and not args.keep:
        shutil.rmtree(root)
    with measure("generate", None) as gen_t:
        summary = generate(args.raw_root, n, str(root / "corpus"), args.seed, args.incremental)
    truth = read_truth(summary["truth"])
    cfg = bench_config(args.conf, root, n, args.overrides)
    register_all(spark, cfg)
    stages = [s for s in (args.stages.split(",") if args.stages else available_stages()) if s not in SKIP_STAGES]
    report = {"n": n, "generator": {**summary, "time": gen_t}, "stages": run_stages(spark, cfg, stages, new_run_id(), n)}
    report["totals"] = _totals(report["stages"])
    _save(root, report)
    frame = scale_eval.truth_frame(spark, cfg, [t for t in truth if t["tree"] == "raw"])
    report["ingested_with_truth"] = len(frame)
    if "dedup" in stages:
        counts = report["stages"]["dedup"].get("counts", {})
        report["dedup"] = {
            "candidates": {k: v for k, v in counts.items() if k.startswith(("candidates_", "exact_groups_"))},
            "dedup_stage": scale_eval.stage_quality(spark, cfg, frame),
            "mllib_minhashlsh": scale_eval.mllib_baseline(spark, cfg, frame, args.baseline_threshold, args.mllib_tables,
                                                          args.baseline_time_limit),
            "wordset_jaccard": scale_eval.jaccard_baseline(spark, cfg, frame, args.baseline_threshold,
                                                           args.jaccard_sample, len(frame)),
        }
        sample = scale_eval.sample_frame(frame, args.jaccard_sample)
        report["dedup"]["dedup_stage_on_jaccard_sample"] = scale_eval.stage_quality(spark, cfg, sample)
        dedup_wall = report["stages"]["dedup"]["wall_s"]
        embed_s = report["stages"]["dedup"].get("counts", {}).get("embedding_s") or 0
        mllib = report["dedup"]["mllib_minhashlsh"]
        mllib_wall = mllib["time"]["wall_s"]
        report["dedup"]["speedup_vs_mllib_wall"] = round(mllib_wall / dedup_wall, 3) if dedup_wall else None
        report["dedup"]["speedup_vs_mllib_wall_without_embedding"] = (
            round(mllib_wall / (dedup_wall - embed_s), 3) if dedup_wall > embed_s else None)
        report["dedup"]["speedup_is_lower_bound"] = not mllib.get("finished", True)  # MLlib cancelled at its limit
    _save(root, report)
    if args.embed_sample:
        report["embedding"] = scale_eval.embedding_comparison(spark, cfg, args.embed_sample)
        _save(root, report)
    if args.incremental and summary["extra"]:
        report["incremental"] = incremental(spark, cfg, root, stages, n, report["totals"], args.conf, args.overrides,
                                            args.rerun_process)
    _save(root, report)
    return report


def _save(root: Path, report: dict) -> None:
    """Written after each part, so a long run stopped midway still leaves what it measured."""
    (root / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")


def append_result(path: str, result: dict) -> None:
    """Print one measurement and append it to the JSON list at `path` (the small benchmarks/ scripts' output)."""
    print(json.dumps(result), flush=True)
    out = json.loads(Path(path).read_text()) if Path(path).exists() else []
    Path(path).write_text(json.dumps(out + [result], indent=2) + "\n")


def incremental(spark, cfg, root: Path, stages: list[str], n: int, first: dict, conf: str = "conf/shared_corpus.yaml",
                overrides: list[str] = (), process: str = "fresh") -> dict:
    """Copy the held-back objects into the raw tree and run every stage again; time relative to the first run.

    `process="fresh"` (the default) runs the stages in a new Python process and JVM (etl.bench.rerun), as a
    user's rerun is a new spark-submit; "same" reuses this session, whose warm JVM makes a rerun look cheaper.
    A cluster master always reruns in this session (a second driver would need its own submit)."""
    from etl.cli import new_run_id

    extra = root / "corpus" / "raw_extra"
    for path in sorted(p for p in extra.rglob("*") if p.is_file()):
        target = root / "corpus" / "raw" / path.relative_to(extra)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    if process == "fresh" and spark.sparkContext.master.startswith("local"):
        rerun, how = rerun_in_fresh_process(root, n, stages, conf, list(overrides))
    else:
        rerun, how = run_stages(spark, cfg, stages, new_run_id(), n), {"process": "same"}
    totals = _totals(rerun)
    return {"stages": rerun, "totals": totals, **how,
            "wall_ratio": round(totals["wall_s"] / first["wall_s"], 3) if first["wall_s"] and rerun else None,
            "cpu_ratio": round(totals["cpu_s"] / first["cpu_s"], 3) if first["cpu_s"] and rerun else None,
            "texts_embedded": rerun.get("dedup", {}).get("counts", {}).get("texts_embedded")}


def rerun_in_fresh_process(root: Path, n: int, stages: list[str], conf: str, overrides: list[str]
                           ) -> tuple[dict, dict]:
    """(stages measured by `python -m etl.bench.rerun`, how it ran); no stages and an error when it failed."""
    out = root / "rerun_stages.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "etl.bench.rerun", "--root", str(root), "--n", str(n), "--conf", conf,
           "--stages", ",".join(stages), "--out", str(out), *[a for o in overrides for a in ("--set", o)]]
    # the child builds its own local session: not the spark-submit parent's settings, never its py4j gateway
    env = {k: v for k, v in os.environ.items() if k != "ETL_SPARK_SUBMIT" and not k.startswith("PYSPARK_GATEWAY")}
    started = time.perf_counter()
    code = subprocess.run(cmd, env=env, check=False).returncode
    how = {"process": "fresh", "process_wall_s": round(time.perf_counter() - started, 1)}
    if code != 0 or not out.exists():
        log.warning("bench: the rerun process exited %s (%s); its log is above", code, " ".join(cmd))
        return {}, {**how, "error": f"python -m etl.bench.rerun exited {code}"}
    data = json.loads(out.read_text())
    return data["stages"], {**how, "session_start_s": data["session_start_s"]}


def plot(reports: list[dict], path: Path) -> None:
    """Time vs N per stage (log-log), one line per stage plus the total."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in reports]
    fig, ax = plt.subplots(figsize=(8, 5))
    for stage in reports[0]["stages"]:
        ax.plot(ns, [r["stages"].get(stage, {}).get("wall_s", float("nan")) for r in reports], marker="o", label=stage)
    ax.plot(ns, [r["totals"]["wall_s"] for r in reports], marker="s", color="black", linewidth=2, label="total")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("conversations (N)")
    ax.set_ylabel("wall seconds")
    ax.set_title("pipeline stage time vs N")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def collected_reports(out: Path) -> list[dict]:
    """Every DIR/n<N>/report.json, by N (runs of different N may come from separate invocations)."""
    reports = [json.loads(p.read_text()) for p in out.glob("n*/report.json")]
    return sorted(reports, key=lambda r: r["n"])


def summary_table(reports: list[dict]) -> str:
    stages = list(reports[0]["stages"])
    head = f"{'stage':<18}" + "".join(f"{'N=' + str(r['n']):>28}" for r in reports)
    lines = [head, f"{'':<18}" + "".join(f"{'wall s   cpu s  rows/s':>28}" for _ in reports)]
    for stage in [*stages, "TOTAL"]:
        cells = []
        for r in reports:
            s = r["totals"] if stage == "TOTAL" else r["stages"].get(stage, {})
            flag = " !" if s.get("error") else ""
            rate = s.get("rows_per_s") or (r["n"] / s["wall_s"] if stage == "TOTAL" and s.get("wall_s") else 0)
            cells.append(f"{s.get('wall_s', 0):>11.1f}{s.get('cpu_s', 0):>8.1f}{rate:>7.0f}{flag:>2}")
        lines.append(f"{stage:<18}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="etl bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", required=True, help="conversations, comma-separated for several runs: 2000,10000")
    parser.add_argument("--out", required=True, help="folder for corpora, lakes and reports")
    parser.add_argument("--conf", default="conf/shared_corpus.yaml", help="family layout of the generated tree")
    parser.add_argument("--raw-root", default="../shared/data/raw", help="the real corpus the generator expands")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default="", help="comma-separated subset (default: every available stage)")
    parser.add_argument("--incremental", type=float, default=0.01, help="new-data fraction of the rerun (0: none)")
    parser.add_argument("--rerun-process", choices=("fresh", "same"), default="fresh",
                        help="run the incremental rerun in a new process, as a user's rerun is (default), or in this one")
    parser.add_argument("--embed-sample", type=int, default=512, help="texts of the embedding comparison (0: skip)")
    parser.add_argument("--jaccard-sample", type=int, default=3000, help="conversations of the word-set baseline")
    parser.add_argument("--baseline-threshold", type=float, default=0.8)
    parser.add_argument("--mllib-tables", type=int, default=5)
    parser.add_argument("--baseline-time-limit", type=float, default=0,
                        help="cancel the MLlib join after this many seconds and report a lower bound (0: no limit)")
    parser.add_argument("--keep", action="store_true", help="do not wipe DIR/n<N> first")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    from etl.cli import setup_logging
    from etl.spark import get_spark

    setup_logging()
    spark = get_spark("etl-bench")
    reports = []
    for n in (int(x) for x in args.n.split(",")):
        started = time.time()
        reports.append(bench_one(spark, args, n))
        log.info("bench n=%d done in %.0fs", n, time.time() - started)
    out = Path(args.out)
    (out / "bench_report.json").write_text(json.dumps(reports, indent=2, default=str) + "\n")
    every = collected_reports(out)  # this run's N plus earlier runs into the same DIR, for the plot
    if len(every) > 1:
        plot(every, out / "time_vs_n.png")
    print(summary_table(reports))
    print(json.dumps([{"n": r["n"], "dedup": {k: v for k, v in r.get("dedup", {}).items() if k != "candidates"},
                       "embedding": r.get("embedding"), "incremental": {k: v for k, v in r.get("incremental", {}).items()
                                                                       if k != "stages"}} for r in reports],
                     indent=1, default=str)[:20000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
