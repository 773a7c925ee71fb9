"""The one SparkSession builder: reuse an active session (Databricks, notebooks, spark-submit), else local + Delta."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

# Delta jars for local runs, pinned with their Maven Central SHA-1 so a cached copy is verified, never trusted.
DELTA_VERSION = "4.0.1"
DELTA_JARS = (
    ("io.delta", "delta-spark_2.13", DELTA_VERSION),
    ("io.delta", "delta-storage", DELTA_VERSION),
)
MAVEN_CENTRAL = os.environ.get("ETL_MAVEN_REPO", "https://repo1.maven.org/maven2")
JAR_CACHE = Path(os.environ.get("ETL_JAR_CACHE", Path.home() / ".cache" / "etl" / "jars"))


class SparkSetupError(RuntimeError):
    """The local Spark/Delta runtime could not be prepared."""


def _m2_path(group: str, artifact: str, version: str) -> Path:
    return Path.home() / ".m2" / "repository" / group.replace(".", "/") / artifact / version / f"{artifact}-{version}.jar"


def _download(url: str, dest: Path) -> None:
    tmp = dest.with_suffix(".part")
    with urllib.request.urlopen(url, timeout=120) as resp, open(tmp, "wb") as out:
        shutil.copyfileobj(resp, out)
    sha1_url = url + ".sha1"
    with urllib.request.urlopen(sha1_url, timeout=60) as resp:
        expected = resp.read().decode().split()[0].strip()
    actual = hashlib.sha1(tmp.read_bytes()).hexdigest()
    if actual != expected:
        tmp.unlink()
        raise SparkSetupError(f"{url}: SHA-1 {actual} != published {expected}; retry or check the mirror")
    tmp.replace(dest)


def delta_jars() -> list[str]:
    """Local paths of the Delta jars: ~/.m2 first, then our cache, else fetched once from Maven Central."""
    JAR_CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    for group, artifact, version in DELTA_JARS:
        m2 = _m2_path(group, artifact, version)
        cached = JAR_CACHE / f"{artifact}-{version}.jar"
        if m2.exists():
            paths.append(str(m2))
            continue
        if not cached.exists():
            if shutil.which("mvn"):
                subprocess.run(["mvn", "-q", "dependency:get", f"-Dartifact={group}:{artifact}:{version}"],
                               check=False, capture_output=True)
                if m2.exists():
                    paths.append(str(m2))
                    continue
            url = f"{MAVEN_CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"
            log.info("fetching %s", url)
            try:
                _download(url, cached)
            except OSError as exc:
                raise SparkSetupError(f"{artifact}-{version}.jar: not cached and download failed ({exc}); "
                                      f"put it in {JAR_CACHE} or ~/.m2") from None
        paths.append(str(cached))
    return paths


DEFAULT_SHUFFLE_PARTITIONS = 8


def local_conf(app_name: str = "etl", shuffle_partitions: int = DEFAULT_SHUFFLE_PARTITIONS) -> dict[str, str]:
    """Session settings for a local run with Delta; small shuffles and no UI, as Delta's own tests do."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return {
        "spark.app.name": app_name,
        "spark.master": os.environ.get("ETL_SPARK_MASTER", "local[*]"),
        "spark.jars": ",".join(delta_jars()),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.default.parallelism": str(shuffle_partitions),
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": os.environ.get("ETL_DRIVER_MEMORY", "6g"),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
        "spark.sql.session.timeZone": "UTC",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.sql.warehouse.dir": os.environ.get("ETL_WAREHOUSE_DIR", str(Path.cwd() / "spark-warehouse")),
        "spark.python.worker.reuse": "true",
        "spark.driver.extraJavaOptions": "-Dderby.system.home=/tmp/etl-derby",
    }


def get_spark(app_name: str = "etl", shuffle_partitions: int | None = None):
    """Return the active session if there is one, else build a local session with Delta configured.

    Local shuffle partitions: the argument, else `ETL_SHUFFLE_PARTITIONS`, else 8 (tiny inputs such as the sample
    or the tests run faster with 2).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if os.environ.get("SPARK_REMOTE") or os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return SparkSession.builder.getOrCreate()
    if os.environ.get("ETL_SPARK_SUBMIT") == "1":
        # spark-submit already configured master, jars and Delta for the chosen platform.
        return SparkSession.builder.appName(app_name).getOrCreate()
    builder = SparkSession.builder
    if shuffle_partitions is None:
        shuffle_partitions = int(os.environ.get("ETL_SHUFFLE_PARTITIONS", DEFAULT_SHUFFLE_PARTITIONS))
    for key, value in local_conf(app_name, shuffle_partitions).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
