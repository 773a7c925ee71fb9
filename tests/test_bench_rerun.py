"""The bench's incremental rerun runs in a fresh process (a user's rerun is a new spark-submit), without Spark:
the child command and environment, its report read back, a failed child recorded, a cluster master kept in
process, and the held-back objects copied into the raw tree first."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

from etl.bench import run as bench_run


def _fake_child(calls: list, code: int = 0, stages: dict | None = None):
    def fake_run(cmd, env, check):
        calls.append((cmd, env))
        if code == 0:
            out = cmd[cmd.index("--out") + 1]
            with open(out, "w") as fh:
                json.dump({"session_start_s": 7.5, "stages": stages or {"ingest": {"wall_s": 3.0, "cpu_s": 4.0}}}, fh)
        return subprocess.CompletedProcess(cmd, code)
    return fake_run


def test_fresh_rerun_starts_its_own_session_and_reads_its_report(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(bench_run.subprocess, "run", _fake_child(calls))
    monkeypatch.setenv("ETL_SPARK_SUBMIT", "1")
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "40000")
    monkeypatch.setenv("PYSPARK_GATEWAY_SECRET", "s")
    stages, how = bench_run.rerun_in_fresh_process(tmp_path, 200, ["ingest", "dedup"], "conf/x.yaml",
                                                   ["dedup.num_perm=64"])
    cmd, env = calls[0]
    assert cmd[:3] == [sys.executable, "-m", "etl.bench.rerun"]
    assert cmd[cmd.index("--stages") + 1] == "ingest,dedup" and cmd[cmd.index("--n") + 1] == "200"
    assert cmd[cmd.index("--set") + 1] == "dedup.num_perm=64" and cmd[cmd.index("--conf") + 1] == "conf/x.yaml"
    # its own local session with Delta: not the parent's spark-submit settings, never the parent's py4j gateway
    assert not {"ETL_SPARK_SUBMIT", "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET"} & set(env)
    assert stages == {"ingest": {"wall_s": 3.0, "cpu_s": 4.0}}
    assert how["process"] == "fresh" and how["session_start_s"] == 7.5 and "error" not in how


def test_a_failed_rerun_process_is_recorded_not_raised(tmp_path, monkeypatch):
    (tmp_path / "rerun_stages.json").write_text("{}")  # a previous run's report must not be read as this one's
    monkeypatch.setattr(bench_run.subprocess, "run", _fake_child([], code=3))
    stages, how = bench_run.rerun_in_fresh_process(tmp_path, 200, ["ingest"], "conf/x.yaml", [])
    assert stages == {} and "exited 3" in how["error"]


def _bench_root(tmp_path):
    extra = tmp_path / "corpus" / "raw_extra" / "fam"
    extra.mkdir(parents=True)
    (extra / "more.jsonl").write_text('{"a": 1}\n')
    return tmp_path


def test_incremental_copies_the_extras_then_reruns_fresh_on_a_local_master(tmp_path, monkeypatch):
    root = _bench_root(tmp_path)
    calls: list = []
    monkeypatch.setattr(bench_run.subprocess, "run", _fake_child(calls, stages={"ingest": {"wall_s": 5.0, "cpu_s": 8.0}}))
    spark = SimpleNamespace(sparkContext=SimpleNamespace(master="local[*]"))
    report = bench_run.incremental(spark, None, root, ["ingest"], 200, {"wall_s": 50.0, "cpu_s": 40.0})
    assert (root / "corpus" / "raw" / "fam" / "more.jsonl").read_text() == '{"a": 1}\n'
    assert len(calls) == 1 and report["process"] == "fresh"
    assert report["wall_ratio"] == 0.1 and report["cpu_ratio"] == 0.2


def test_incremental_stays_in_process_on_a_cluster_master_or_when_asked(tmp_path, monkeypatch):
    root = _bench_root(tmp_path)
    monkeypatch.setattr(bench_run.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("spawned")))
    monkeypatch.setattr(bench_run, "run_stages", lambda spark, cfg, stages, run_id, n: {"ingest": {"wall_s": 5.0}})
    for master, process in (("spark://host:7077", "fresh"), ("local[2]", "same")):
        spark = SimpleNamespace(sparkContext=SimpleNamespace(master=master))
        report = bench_run.incremental(spark, None, root, ["ingest"], 200, {"wall_s": 50.0, "cpu_s": 0},
                                       process=process)
        assert report["process"] == "same" and report["wall_ratio"] == 0.1 and report["cpu_ratio"] is None


def test_scripts_on_a_finished_lake_run_the_named_stages_or_every_one_but_upload():
    import argparse

    every = bench_run.chosen_stages("")
    assert "upload" not in every and {"ingest", "dedup", "verify"} <= set(every)
    assert bench_run.chosen_stages("verify,,dedup") == ["verify", "dedup"]
    parser = argparse.ArgumentParser()
    bench_run.add_lake_arguments(parser, stages_default="dedup")
    args = parser.parse_args(["--root", "R", "--n", "200"])
    assert (args.root, args.n, args.stages, args.conf) == ("R", 200, "dedup", "conf/shared_corpus.yaml")
