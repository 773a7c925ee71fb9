"""Idempotence: every stage of the pipeline, run twice in a row on the sample, leaves every lake table unchanged
(no new Delta version) and rewrites no release file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from etl.cli import GateFailure, available_stages, run_stage
from etl.testing.lake_check import table_state, table_versions

STAGES = available_stages()
# Audit tables keyed by run id: a re-run under a new run id adds that run's rows (the same verdicts), and keeps
# every earlier row as it was; re-running with the same run id is a no-op.
PER_RUN_TABLES = {"gate_results": "run_id"}
# Files a re-run may legitimately rewrite: they record when they were made or which run checked the release.
TIMESTAMPED = ("manifest.json", "croissant.json", "gate_report.json", "index.html", ".upload_journal.jsonl")


def _release_digest(release_dir: str) -> dict[str, str]:
    root = Path(release_dir)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in TIMESTAMPED}


@pytest.fixture(scope="module")
def twice(spark, tmp_path_factory):
    """Run each stage twice in a row over the sample; per stage: tables and release files the 2nd run changed."""
    from etl.config import load_config
    from etl.sample_data import write_sample

    root = tmp_path_factory.mktemp("idempotence")
    write_sample(str(root / "raw"))
    cfg = load_config(str(Path(__file__).resolve().parents[1] / "conf" / "sample.yaml"),
                      [f"raw_root={root / 'raw'}", f"lake_root={root / 'lake'}",
                       f"release_dir={root / 'release'}", "database=idempotence"])
    out = {}
    for stage in STAGES:
        after = []
        for attempt in (1, 2):
            try:
                run_stage(spark, cfg, stage, f"idem-{stage}-{attempt}")
            except GateFailure:
                pass  # the sample's verdict does not matter here, only that a re-run changes nothing
            after.append((table_versions(spark, cfg), _release_digest(cfg.release_dir)))
        (v1, f1), (v2, f2) = after
        changed = sorted(name for name in v2 if v1.get(name) != v2[name])
        per_run = [n for n in changed if n in PER_RUN_TABLES and _same_rows_per_run(spark, cfg, n, stage)]
        changed = [n for n in changed if n not in per_run]
        no_op_versions = []
        if changed:  # a new version with the same content is still a (no-op) version: report it apart
            full = table_state(spark, cfg)
            no_op_versions = [n for n in changed if n in full and _content_at(spark, cfg, n, v1.get(n)) == full[n][1]]
        out[stage] = {"changed": changed, "no_op_versions": no_op_versions, "per_run_rows_added": per_run,
                      "files_changed": sorted(k for k in set(f1) | set(f2) if f1.get(k) != f2.get(k))}
    return out


def _same_rows_per_run(spark, cfg, name: str, stage: str) -> bool:
    """The 2nd run's rows equal the 1st run's (run id aside), and the 1st run's rows are still there."""
    from etl.io import delta

    df = spark.read.format("delta").load(cfg.table_path(name))
    col = PER_RUN_TABLES[name]
    runs = [df.where(df[col] == f"idem-{stage}-{attempt}").drop(col) for attempt in (1, 2)]
    other = df.where(~df[col].isin(f"idem-{stage}-1", f"idem-{stage}-2")).count()
    return other == 0 and delta.fingerprint(runs[0]) == delta.fingerprint(runs[1]) != (0, 0, 0)


def _content_at(spark, cfg, name: str, version: int | None):
    from etl.io import delta

    if version is None:
        return None
    return delta.fingerprint(spark.read.format("delta").option("versionAsOf", version).load(cfg.table_path(name)))


@pytest.mark.parametrize("stage", STAGES)
def test_running_a_stage_twice_in_a_row_changes_no_table_and_no_release_file(twice, stage):
    result = twice[stage]
    assert result["changed"] == [], f"{stage}: new Delta versions on re-run ({result})"
    assert result["files_changed"] == [], f"{stage}: release files rewritten on re-run ({result})"
