"""verify: run every release gate; results to `<lake_root>/gate_results` and `<release_dir>/gate_report.json`.

Any failed gate raises `etl.cli.GateFailure` (CLI exit code 4) naming the failed gates, which stops the run
before upload; the upload stage also refuses a release whose gate report is missing, failed or stale.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession

from etl.cli import GateFailure
from etl.config import Config
from etl.gates import GateResult, close_release, open_release, run_gates
from etl.io import delta, objects, release
from etl.schemas import GATE_RESULTS, GATE_RESULTS_SCHEMA

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"[A-Za-z0-9_.:-]+")


def gate_rows(results: list[GateResult], run_id: str, release_id: str) -> list[dict]:
    """gate_results rows: figures and examples as sorted-key JSON, so equal results give equal rows."""
    return [{"run_id": run_id, "release_id": release_id, "gate": r.gate, "passed": bool(r.passed),
             "figures": json.dumps(r.figures, sort_keys=True, default=str),
             "examples": json.dumps(r.examples, sort_keys=True, default=str)} for r in results]


def gate_results_frame(spark: SparkSession, rows: list[dict]) -> DataFrame:
    """gate_results rows as a DataFrame of GATE_RESULTS_SCHEMA."""
    return spark.createDataFrame(rows, GATE_RESULTS_SCHEMA)


def write_gate_results(spark: SparkSession, cfg: Config, run_id: str, rows: list[dict]) -> None:
    """Replace exactly this run's rows of gate_results (a re-run of the same run id adds no version)."""
    delta.write_table(gate_results_frame(spark, rows), cfg, GATE_RESULTS, run_id, "verify",
                      replace_where=f"run_id = '{run_id}'")


def _summary(figures: dict, width: int = 90) -> str:
    """The scalar figures of a gate on one line."""
    text = ", ".join(f"{k}={v}" for k, v in figures.items() if isinstance(v, (int, float, str, bool)) or v is None)
    return text if len(text) <= width else text[: width - 3] + "..."


def format_table(results: list[GateResult]) -> str:
    """Gate table for the terminal: gate, PASS/FAIL, key figures."""
    head = f"{'gate':<14}{'result':<8}figures"
    lines = [head, "-" * 100]
    lines += [f"{r.gate:<14}{'PASS' if r.passed else 'FAIL':<8}{_summary(r.figures)}" for r in results]
    return "\n".join(lines)


def report(results: list[GateResult], run_id: str, manifest: dict, manifest_sha256: str) -> dict:
    """gate_report.json content; upload checks `passed` and `manifest_sha256` before sending anything."""
    return {
        "release_id": manifest.get("release_id"),
        "run_id": run_id,
        "checked_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "manifest_sha256": manifest_sha256,
        "passed": all(r.passed for r in results),
        "failed": [r.gate for r in results if not r.passed],
        "gates": [{"gate": r.gate, "passed": r.passed, "figures": r.figures, "examples": r.examples}
                  for r in results],
    }


def failure_message(results: list[GateResult], report_path: str) -> str:
    """One line naming each failed gate with its first figure, and where the full report is."""
    parts = []
    for r in results:
        if not r.passed:
            parts.append(f"{r.gate} ({_summary(r.figures, 60)})")
    return f"gates failed: {'; '.join(parts)}; upload blocked, see {report_path}".replace("\n", " ")


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Run every gate over the release and the lake; raise GateFailure when any fails."""
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"--run-id {run_id!r}: use letters, digits and _.:- only (it keys gate_results rows)")
    view = open_release(spark, cfg, run_id=run_id)
    seconds: dict[str, float] = {}  # per gate: the stage's counts say where its time goes
    try:
        results = run_gates(view, seconds=seconds)
        n_records = view.records.count()
    finally:
        close_release(view)
    log.info("verify: seconds per gate %s; computed now (not in the memo tables) %s", seconds, view.memo_computed)
    manifest = view.manifest
    release_id = str(manifest.get("release_id") or "")
    write_gate_results(spark, cfg, run_id, gate_rows(results, run_id, release_id))
    sha, _ = release.file_sha256(release.manifest_path(cfg.release_dir))
    path = os.path.join(cfg.release_dir, release.GATE_REPORT_FILE)
    objects.write_text(path, json.dumps(report(results, run_id, manifest, sha), indent=2, sort_keys=True,
                                        default=str) + "\n")
    print(format_table(results), flush=True)
    failed = [r.gate for r in results if not r.passed]
    if failed:
        raise GateFailure(failure_message(results, path))
    return {"release_id": release_id, "records": n_records, "gates": len(results), "gates_passed": len(results),
            "gate_seconds": seconds, "memo_computed": view.memo_computed}
