"""Idempotence: every stage of the pipeline, run twice in a row on the sample, leaves every lake table unchanged
(no new Delta version) and rewrites no release file. The first run is the shared sample lake's build (copied)."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest

from etl.cli import GateFailure, available_stages, run_stage
from etl.testing.lake_check import table_state, table_versions

from lake_fixture import SAMPLE_RUN_ID, sample_lake  # noqa: F401 - shared session fixture

pytestmark = pytest.mark.slow  # every stage re-run over a copy of the sample lake (~3 min)

STAGES = available_stages()
# Audit tables keyed by run id: a re-run under a new run id adds that run's rows (the same verdicts), and keeps
# every earlier row as it was; re-running with the same run id is a no-op.
PER_RUN_TABLES = {"gate_results": "run_id"}
# Files a re-run may legitimately rewrite: they record when they were made or which run checked the release.
# From this stage on, stages run twice here although the shared build ran them: export publishes a new release
# folder, so what the build's later stages wrote into the release (the report) is gone after any export (a stale
# report must not survive), and their first run here is the one to compare with.
RUN_TWICE = ("export",)
TIMESTAMPED = ("manifest.json", "croissant.json", "gate_report.json", "index.html", ".upload_journal.jsonl")


def _release_digest(release_dir: str) -> dict[str, str]:
    root = Path(release_dir)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in TIMESTAMPED}


@pytest.fixture(scope="module")
def twice(spark, sample_lake, tmp_path_factory):
    """Each stage run again in a row over a copy of the shared sample lake (its first run); stages the shared
    build skips (upload) run twice here. Per stage: the tables and release files the re-run changed."""
    from etl.config import load_config

    root = tmp_path_factory.mktemp("idempotence")
    for part in ("lake", "release"):  # the raw tree is only read: the copy reads the shared one
        if getattr(sample_lake, part).exists():
            shutil.copytree(getattr(sample_lake, part), root / part)
    overrides = [o for o in sample_lake.overrides if o != "upload=false"]
    cfg = load_config(sample_lake.conf, [*overrides, f"raw_root={sample_lake.raw}", f"lake_root={root / 'lake'}",
                                         f"release_dir={root / 'release'}", "database=idempotence"])
    started, out, fresh = time.monotonic(), {}, False
    for stage in STAGES:
        fresh = fresh or stage in RUN_TWICE
        first = stage in sample_lake.seconds and not fresh
        before = [(table_versions(spark, cfg), _release_digest(cfg.release_dir))] if first else []
        runs = {}
        for attempt in ((2,) if first else (1, 2)):
            try:
                run_stage(spark, cfg, stage, f"idem-{stage}-{attempt}")
            except GateFailure:
                pass  # the sample's verdict does not matter here, only that a re-run changes nothing
            runs[attempt] = (table_versions(spark, cfg), _release_digest(cfg.release_dir))
        (v1, f1), (v2, f2) = (before + list(runs.values()))[-2:]
        changed = sorted(name for name in v2 if v1.get(name) != v2[name])
        first_run = SAMPLE_RUN_ID if first else f"idem-{stage}-1"
        per_run = [n for n in changed if n in PER_RUN_TABLES
                   and _same_rows_per_run(spark, cfg, n, first_run, f"idem-{stage}-2", v1.get(n))]
        changed = [n for n in changed if n not in per_run]
        no_op_versions = []
        if changed:  # a new version with the same content is still a (no-op) version: report it apart
            full = table_state(spark, cfg)
            no_op_versions = [n for n in changed if n in full and _content_at(spark, cfg, n, v1.get(n)) == full[n][1]]
        out[stage] = {"changed": changed, "no_op_versions": no_op_versions, "per_run_rows_added": per_run,
                      "files_changed": sorted(k for k in set(f1) | set(f2) if f1.get(k) != f2.get(k))}
    print(f"shared build {sum(sample_lake.seconds.values()):.0f}s; re-runs {time.monotonic() - started:.0f}s")
    return out


def _same_rows_per_run(spark, cfg, name: str, first_run: str, rerun: str, version_before: int | None) -> bool:
    """The re-run's rows equal the first run's (run id aside), and every row there before is still there."""
    from etl.io import delta

    df = spark.read.format("delta").load(cfg.table_path(name))
    col = PER_RUN_TABLES[name]
    runs = [df.where(df[col] == run).drop(col) for run in (first_run, rerun)]
    kept = delta.fingerprint(df.where(df[col] != rerun)) == _content_at(spark, cfg, name, version_before)
    return kept and delta.fingerprint(runs[0]) == delta.fingerprint(runs[1]) != (0, 0, 0)


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
