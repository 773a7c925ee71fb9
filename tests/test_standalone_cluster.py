"""spark-submit.sh on a real Spark standalone cluster (master + 2 workers, loopback only) matches local mode.

The cluster comes from the installed pyspark distribution (`$SPARK_HOME/bin/spark-class`), one core and 1 GiB
per worker, and is always stopped by the fixture's finalizer. The job runs `run --to-stage ingest` (inventory +
ingest: the readers and PII redaction run in the executors' Python workers from dist/etl.zip, the Delta writes
go through the cluster) and its tables are compared, content and not just counts, with the shared sample lake
that the same conf built in local mode. The whole pipeline takes minutes more on two 1-core workers; set
`ETL_CLUSTER_TEST_TO_STAGE=generators` (or any later stage) to run further.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from lake_fixture import sample_lake  # noqa: F401 - shared session fixture

pytestmark = pytest.mark.slow  # a master + 2 workers and a spark-submit run (~2 min)

REPO = Path(__file__).resolve().parents[1]
TO_STAGE = os.environ.get("ETL_CLUSTER_TEST_TO_STAGE", "ingest")
START_TIMEOUT_S = 240
JOB_TIMEOUT_S = 1200


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_env(work: Path) -> dict:
    return {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": "384m", "SPARK_LOG_DIR": str(work / "logs"), "SPARK_WORKER_DIR": str(work / "work"),
            "SPARK_CONF_DIR": str(work / "conf")}


def master_state(webui_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{webui_port}/json/", timeout=5) as resp:
        return json.load(resp)


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each daemon's process group (the JVM and anything it started), SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory):
    """spark://127.0.0.1:PORT with 2 workers; yields (master_url, webui_port)."""
    work = tmp_path_factory.mktemp("standalone")
    for sub in ("logs", "work", "conf"):
        (work / sub).mkdir()
    env = cluster_env(work)
    port, webui = free_port(), free_port()
    spark_class = str(spark_home() / "bin" / "spark-class")
    url = f"spark://127.0.0.1:{port}"
    commands = [[spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                 "--webui-port", str(webui)]]
    commands += [[spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                  "--memory", "1g", "--webui-port", "0", "--work-dir", str(work / "work" / f"w{i}"), url]
                 for i in range(2)]
    procs: list[subprocess.Popen] = []
    logs = [open(work / "logs" / f"daemon{i}.log", "wb") for i in range(len(commands))]  # noqa: SIM115
    try:
        for cmd, log in zip(commands, logs):
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + START_TIMEOUT_S
        state: dict = {}
        while time.monotonic() < deadline:
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                pytest.fail(f"cluster daemon exited with {dead[0].returncode}:\n{log_tail(work / 'logs' / 'daemon0.log')}")
            try:
                state = master_state(webui)
                if state.get("status") == "ALIVE" and state.get("aliveworkers", 0) >= 2:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"standalone cluster not up in {START_TIMEOUT_S}s: {state}\n{log_tail(work / 'logs' / 'daemon0.log')}")
        yield url, webui
    finally:
        stop(procs)
        for log in logs:
            log.close()


def comparable(df):
    """A conversations/quarantine/inventory frame without run ids, maps and arrays as canonical JSON."""
    from pyspark.sql import functions as F

    out = df.drop("ingest_run_id")
    for name, dtype in out.dtypes:
        if dtype.startswith("map"):
            out = out.withColumn(name, F.to_json(F.array_sort(F.map_entries(name))))
        elif dtype.startswith(("array", "struct")):
            out = out.withColumn(name, F.to_json(name))
    return out


def families_written_up_to(stage: str, cfg) -> list[str] | None:
    """Families `conversations` holds after `stage` (None: every family; later stages do not write it)."""
    from etl.cli import STAGES

    order = list(STAGES)
    raw = [f.name for f in cfg.raw_families()]
    if order.index(stage) < order.index("sessions"):
        return raw
    if order.index(stage) < order.index("generators"):
        return [*raw, "long_running_therapy"]
    return None


def assert_same_content(spark, cluster_cfg, local_cfg, table: str) -> int:
    from pyspark.sql import functions as F

    from etl.io.delta import read_table

    cluster, local = comparable(read_table(spark, cluster_cfg, table)), comparable(read_table(spark, local_cfg, table))
    families = families_written_up_to(TO_STAGE, local_cfg)
    if table == "conversations" and families is not None:
        local = local.where(F.col("family").isin(families))  # the local lake ran every stage
    n_cluster, n_local = cluster.count(), local.count()
    assert n_cluster == n_local, f"{table}: {n_cluster} rows on the cluster, {n_local} in local mode"
    only_cluster = cluster.exceptAll(local).limit(3).collect()
    only_local = local.exceptAll(cluster).limit(3).collect()
    assert not only_cluster and not only_local, f"{table} differs:\ncluster only {only_cluster}\nlocal only {only_local}"
    return n_cluster


def test_pipeline_on_standalone_cluster_matches_local_mode(standalone_cluster, sample_lake, spark, tmp_path):
    from etl.config import load_config

    url, webui = standalone_cluster
    out = tmp_path / "cluster"
    sets = [*sample_lake.overrides, f"raw_root={sample_lake.raw}", f"lake_root={out / 'lake'}",
            f"release_dir={out / 'release'}", "database=cluster_lake"]
    cmd = ["./spark-submit.sh", "--profile", "standalone", "--master", url, "run", "--to-stage", TO_STAGE,
           "--conf", sample_lake.conf, *[arg for s in sets for arg in ("--set", s)]]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "ETL_PROGRESS": "0",
           "SPARK_SUBMIT_OPTS_EXTRA": f"--conf spark.sql.warehouse.dir={tmp_path / 'warehouse'} "
                                      "--conf spark.executor.memory=768m --conf spark.driver.memory=1g --conf spark.ui.enabled=false"}
    start = time.monotonic()
    job = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S, check=False)
    seconds = time.monotonic() - start
    output = job.stdout + job.stderr  # spark-submit's PythonRunner sends the driver's stderr to its stdout
    assert job.returncode == 0, f"spark-submit exited {job.returncode} after {seconds:.0f}s:\n{output[-4000:]}"
    assert f"stage {TO_STAGE} done" in output, output[-4000:]

    apps = master_state(webui).get("completedapps", []) + master_state(webui).get("activeapps", [])
    assert [a for a in apps if a.get("name") == "etl"], f"no etl application ran on {url}: {apps}"

    cluster_cfg = load_config(sample_lake.conf, [*sets], check_paths=False)
    local_cfg = load_config(sample_lake.conf, [*sample_lake.overrides, *sample_lake.path_overrides(),
                                               f"database={sample_lake.database}"], check_paths=False)
    rows = {t: assert_same_content(spark, cluster_cfg, local_cfg, t) for t in ("inventory", "quarantine", "conversations")}
    assert rows["conversations"] > 0
    print(f"standalone cluster run to {TO_STAGE} in {seconds:.0f}s; identical to local mode: {rows}")
