"""Crash-restart: `python -m etl run` SIGKILLed (driver, JVM and workers) at stage boundaries and in the middle of
a stage's writes, then re-run: the tables equal an uninterrupted run's (content, run ids aside), Delta history has
no duplicate write, and no raw record is lost. The kill points come from ETL_TEST_KILL_AT (etl/testing/crash.py);
benchmarks/crash_sweep.py sweeps every stage and point.
"""

from __future__ import annotations

import os

import pytest

from etl.testing.lake_check import content, history_problems, run_cli, table_state

pytestmark = pytest.mark.slow  # three SIGKILLed / restarted CLI runs (~2 min)

STAGES = ("inventory", "ingest")
# Chained on one lake: each run starts from what the previous crash left (a half-written first table and a stale
# lock; then a finished stage and a stage with one of its tables written). More points (every stage,
# replaceWhere writes into the shared conversations table): benchmarks/crash_sweep.py.
KILL_POINTS = (
    "inventory:during_write",
    "ingest:after_write:conversations",
)


@pytest.fixture(scope="module")
def sample_raw(tmp_path_factory):
    from etl.sample_data import write_sample

    raw = tmp_path_factory.mktemp("raw")
    truth = write_sample(str(raw))
    return raw, truth


def _overrides(raw, lake_dir, database: str) -> list[str]:
    return [f"raw_root={raw}", f"lake_root={lake_dir / 'lake'}", f"release_dir={lake_dir / 'release'}",
            f"database={database}"]


def test_killed_runs_rerun_to_the_same_tables_with_no_duplicate_writes(spark, sample_raw, tmp_path):
    from etl.cli import run_stage
    from etl.config import load_config

    raw, truth = sample_raw
    conf = "conf/sample.yaml"
    # the uninterrupted reference, in this process (same code as the CLI's run)
    ref_cfg = load_config(conf, _overrides(raw, tmp_path / "ref", "crash_ref"))
    for stage in STAGES:
        run_stage(spark, ref_cfg, stage, "reference")
    reference = content(table_state(spark, ref_cfg))
    assert {"inventory", "conversations", "quarantine"} <= set(reference)

    overrides = _overrides(raw, tmp_path / "crashed", "crash_test")
    args = ["run", "--conf", conf, "--to-stage", STAGES[-1], *[a for o in overrides for a in ("--set", o)]]
    env = {"ETL_WAREHOUSE_DIR": str(tmp_path / "warehouse"), "ETL_TEST_KILL_DELAY_S": "0.5"}
    logs = []
    for point in KILL_POINTS:
        run = run_cli(args, env={**env, "ETL_TEST_KILL_AT": point}, timeout=600)
        logs.append(run.stderr)
        assert run.killed, f"{point}: exit {run.returncode}, expected SIGKILL\n{run.stderr[-3000:]}"
        assert f"ETL_TEST_KILL_AT: killing the run at {point}" in run.stderr
    final = run_cli(args, env=env, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "took over a stale lock" in "".join(logs[1:]) + final.stderr  # a SIGKILLed run's lock is reclaimed
    assert not os.path.exists(tmp_path / "crashed" / "lake" / "_lock")

    cfg = load_config(conf, overrides)
    assert content(table_state(spark, cfg)) == reference
    assert history_problems(spark, cfg) == []
    raw_records = sum(f["records"] for f in truth["files"].values())
    raw_families = [f.name for f in cfg.raw_families()]
    conv = spark.read.format("delta").load(cfg.table_path("conversations"))
    raw_conv = conv.where(conv.family.isin(raw_families)).count()
    quarantined = spark.read.format("delta").load(cfg.table_path("quarantine")).count()
    assert raw_conv + quarantined == raw_records  # records lost: 0
