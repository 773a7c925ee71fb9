"""One writer per lake: a second run waits for the lock or fails at once with a clear message; locks left by
crashed runs are taken over; the lock works the same on local disk and on S3 (conditional writes)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time

import pytest

from etl.io.lock import LakeLock, LakeLocked, stale_reason
from etl.testing.lake_check import REPO, run_cli


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(lake, **owner) -> None:
    lake.mkdir(parents=True, exist_ok=True)
    (lake / "_lock").write_text(json.dumps(owner))


def test_a_second_run_fails_at_once_naming_the_holder(tmp_path):
    locked = pytest.raises(LakeLocked, match=r"locked by run run-A \(pid \d+ on .*--wait-lock SECONDS")
    with LakeLock(str(tmp_path), "run-A"), locked:
        LakeLock(str(tmp_path), "run-B").acquire()
    assert not (tmp_path / "_lock").exists()


def test_a_waiting_run_gets_the_lock_when_the_holder_finishes(tmp_path, caplog):
    holder = LakeLock(str(tmp_path), "run-A").acquire()
    threading.Timer(1.0, holder.release).start()
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="etl.io.lock"), LakeLock(str(tmp_path), "run-B", wait_s=30):
        waited = time.monotonic() - start
        assert json.loads((tmp_path / "_lock").read_text())["run_id"] == "run-B"
    assert 0.9 <= waited < 10 and "is held by run run-A" in caplog.text


def test_only_one_of_many_contenders_holds_the_lock_at_a_time(tmp_path):
    holders, overlaps, lock = [], [], threading.Lock()

    def contender(i: int) -> None:
        with LakeLock(str(tmp_path), f"run-{i}", wait_s=60):
            with lock:
                holders.append(i)
                overlaps.append(len(holders))
            time.sleep(0.05)
            with lock:
                holders.remove(i)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(overlaps) == 8 and max(overlaps) == 1


@pytest.mark.parametrize("owner, taken", [
    ({"run_id": "dead", "host": socket.gethostname(), "heartbeat": "now"}, True),  # SIGKILLed run on this host
    ({"run_id": "old", "host": "elsewhere", "pid": 1, "heartbeat": 1000.0}, True),  # no heartbeat for ages
    ({"run_id": "live", "host": "elsewhere", "pid": 1, "heartbeat": "now"}, False),  # alive somewhere else
])
def test_a_stale_lock_is_taken_over_with_a_log_line_and_a_live_one_is_not(tmp_path, caplog, owner, taken):
    owner = {**owner, "pid": owner.get("pid") or _dead_pid()}
    if owner["heartbeat"] == "now":
        owner["heartbeat"] = time.time()
    _plant(tmp_path, **owner)
    if not taken:
        with pytest.raises(LakeLocked, match=f"run {owner['run_id']}"):
            LakeLock(str(tmp_path), "new").acquire()
        return
    with caplog.at_level(logging.WARNING, logger="etl.io.lock"), LakeLock(str(tmp_path), "new"):
        assert json.loads((tmp_path / "_lock").read_text())["run_id"] == "new"
    assert f"took over a stale lock held by run {owner['run_id']}" in caplog.text


def test_a_half_written_lock_is_stale_and_a_heartbeat_keeps_a_live_one_fresh(tmp_path):
    (tmp_path / "_lock").write_text("{")
    with LakeLock(str(tmp_path), "run-A", heartbeat_s=0.1):
        first = json.loads((tmp_path / "_lock").read_text())["heartbeat"]
        time.sleep(0.5)
        assert json.loads((tmp_path / "_lock").read_text())["heartbeat"] > first
    assert stale_reason({"host": "x", "heartbeat": time.time()}, 300) is None


def test_the_lock_on_an_s3_lake_uses_conditional_writes(tmp_path):
    from etl.io.local_s3 import local_s3
    from etl.io.objects import s3_client

    with local_s3(("s3://lake-bucket/lake",)) as endpoint:
        with LakeLock("s3://lake-bucket/lake", "run-A", endpoint_url=endpoint, heartbeat_s=0.2):
            with pytest.raises(LakeLocked, match="locked by run run-A"):
                LakeLock("s3://lake-bucket/lake", "run-B", endpoint_url=endpoint).acquire()
            time.sleep(0.5)
        client = s3_client(endpoint)
        assert client.list_objects_v2(Bucket="lake-bucket", Prefix="lake/").get("KeyCount") == 0
        stale = {"run_id": "old", "host": "elsewhere", "pid": 1, "heartbeat": 1000.0}
        client.put_object(Bucket="lake-bucket", Key="lake/_lock", Body=json.dumps(stale).encode())
        with LakeLock("s3://lake-bucket/lake", "run-C", endpoint_url=endpoint):
            body = client.get_object(Bucket="lake-bucket", Key="lake/_lock")["Body"].read()
            assert json.loads(body)["run_id"] == "run-C"


def test_the_cli_fails_cleanly_while_another_run_holds_the_lake(tmp_path):
    lake = tmp_path / "lake"
    with LakeLock(str(lake), "holder-run"):
        run = run_cli(["inventory", "--conf", "conf/sample.yaml", "--set", f"lake_root={lake}",
                       "--set", f"raw_root={REPO / 'etl'}"], timeout=120)
    assert run.returncode == 5, run.stderr[-2000:]
    assert "lake locked: lake" in run.stderr and "locked by run holder-run" in run.stderr
    assert run.seconds < 60  # refused before Spark starts


def _commits(table) -> list[dict]:
    """commitInfo of every Delta version, read from the log (no Spark needed)."""
    out = []
    for path in sorted((table / "_delta_log").glob("*.json")):
        for line in path.read_text().splitlines():
            if line.strip() and "commitInfo" in (entry := json.loads(line)):
                out.append(entry["commitInfo"])
    return out


@pytest.mark.slow  # two CLI runs (two JVMs) racing for the lake (~1 min)
def test_two_runs_started_at_once_serialise_on_the_lock_and_leave_one_clean_table(tmp_path):
    from etl.sample_data import write_sample

    write_sample(str(tmp_path / "raw"))
    args = ["inventory", "--conf", "conf/sample.yaml", "--wait-lock", "600", "--set", f"raw_root={tmp_path / 'raw'}",
            "--set", f"lake_root={tmp_path / 'lake'}", "--set", "database=lock_test"]
    env = {"ETL_WAREHOUSE_DIR": str(tmp_path / "warehouse")}
    results = [None, None]

    def start(i: int) -> None:
        results[i] = run_cli([*args, "--run-id", f"concurrent-{i}"], env=env, timeout=900)

    threads = [threading.Thread(target=start, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    assert sum("waiting up to 600s" in r.stderr for r in results) == 1  # exactly one waited for the other
    commits = _commits(tmp_path / "lake" / "inventory")
    assert [(c["operation"], c["operationMetrics"]["numOutputRows"]) for c in commits] == [("WRITE", "10")]
