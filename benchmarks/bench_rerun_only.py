"""After the bench's first run (report.json saved), score dedup on the truth and run the +1 % rerun, skipping the
baselines: python benchmarks/bench_rerun_only.py out/bench_s8/n100000 100000
(the bench stopped after its first run: the truth score and the +1 % rerun of `etl.bench.run.bench_one`, no baselines)"""
import json
import sys
from pathlib import Path
from etl.bench.run import bench_config, incremental, _save
from etl.bench import scale_eval
from etl.bench.scale import read_truth
from etl.spark import get_spark
from etl.io.delta import register_all
root, n = Path(sys.argv[1]), int(sys.argv[2])
report = json.loads((root / "report.json").read_text())
cfg = bench_config("conf/shared_corpus.yaml", root, n, [])
spark = get_spark("etl-bench")
register_all(spark, cfg)
truth = read_truth(report["generator"]["truth"])
frame = scale_eval.truth_frame(spark, cfg, [t for t in truth if t["tree"] == "raw"])
counts = report["stages"]["dedup"].get("counts", {})
report["dedup"] = {"candidates": {k: v for k, v in counts.items() if k.startswith(("candidates_", "exact_groups_"))},
                   "dedup_stage": scale_eval.stage_quality(spark, cfg, frame),
                   "baselines": "not run in this session (s6: MLlib cancelled at 900 s, >= 4.18x)"}
_save(root, report)
print(json.dumps(report["dedup"]["dedup_stage"])[:600], flush=True)
stages = list(report["stages"])
report["incremental"] = incremental(spark, cfg, root, stages, n, report["totals"])
_save(root, report)
print(json.dumps({k: v for k, v in report["incremental"].items() if k != "stages"}))
