"""Delta reads and writes, catalog registration and history: the only place stages touch tables."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from etl.config import Config
from etl.schemas import SCHEMAS
from etl.testing.crash import crash_point

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int | None  # new version, or None when the write was a no-op
    rows: int
    changed: bool


def table_exists(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    try:
        return DeltaTable.isDeltaTable(spark, path)
    except Exception:  # noqa: BLE001 - a missing or unreadable folder is simply "no table"
        return False


def read_table(spark: SparkSession, cfg: Config, name: str, version: int | None = None) -> DataFrame:
    """Read a lake table (optionally at a pinned version); an absent table reads as empty with its schema."""
    path = cfg.table_path(name)
    if not table_exists(spark, path):
        if version is not None:
            raise FileNotFoundError(f"{path}: no Delta table to read at version {version}; run the stage that writes {name}")
        return spark.createDataFrame([], SCHEMAS[name])
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path)


def read_current(spark: SparkSession, cfg: Config, name: str) -> DataFrame | None:
    """A lake table pinned to its current version (later commits by another writer stay unseen), or None when the
    table does not exist yet: the reader of the memo tables (etl.io.memo, etl.turn_keys)."""
    version = current_version(spark, cfg.table_path(name))
    return None if version is None else read_table(spark, cfg, name, version)


def current_version(spark: SparkSession, path: str) -> int | None:
    from delta.tables import DeltaTable

    if not table_exists(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).select("version").first()[0]


def history(spark: SparkSession, path: str, up_to_version: int | None = None) -> list[dict]:
    """History rows (version, timestamp, operation, operationMetrics, userMetadata), oldest first."""
    from delta.tables import DeltaTable

    rows = (DeltaTable.forPath(spark, path).history()
            .select("version", "timestamp", "operation", "operationParameters", "operationMetrics", "userMetadata")
            .orderBy("version").collect())
    out = []
    for r in rows:
        if up_to_version is not None and r["version"] > up_to_version:
            continue
        out.append({
            "version": r["version"],
            "timestamp": r["timestamp"].isoformat() if r["timestamp"] else None,
            "operation": r["operation"],
            "operationParameters": dict(r["operationParameters"] or {}),
            "operationMetrics": dict(r["operationMetrics"] or {}),
            "userMetadata": r["userMetadata"],
        })
    return out


RUN_ID_COLUMNS = ("ingest_run_id", "run_id")
FINGERPRINT_KEY, STAMP_KEY = "fingerprint", "fingerprint_of"  # in the userMetadata of each write_table commit


def fingerprint(df: DataFrame) -> tuple[int, int, int]:
    """Order-independent content fingerprint: (rows, sum of 32-bit row hashes, xor of 64-bit row hashes).

    Run-id columns are left out: a re-run that reproduces the same content is a no-op, and rows keep the run
    id of the write that produced them.
    """
    cols = sorted(c for c in df.columns if c not in RUN_ID_COLUMNS)
    row_hash = F.xxhash64(F.to_json(F.struct(*[F.col(c) for c in cols])))
    agg = df.select(row_hash.alias("h")).agg(
        F.count(F.lit(1)).alias("n"),
        F.coalesce(F.sum(F.col("h").bitwiseAND(F.lit(0xFFFFFFFF))), F.lit(0)).alias("s"),
        F.coalesce(F.bit_xor("h"), F.lit(0)).alias("x"),
    ).first()
    return int(agg["n"]), int(agg["s"]), int(agg["x"])


def with_comments(df: DataFrame, name: str) -> DataFrame:
    """Attach the schema's column comments (StructField metadata): Delta stores them when it creates the table."""
    meta = {f.name: f.metadata for f in SCHEMAS[name].fields} if name in SCHEMAS else {}
    return df.select(*[F.col(c).alias(c, metadata=meta[c]) if meta.get(c) else F.col(c) for c in df.columns])


def _user_metadata(run_id: str, stage: str, cfg: Config, extra: dict | None = None) -> str:
    meta = {"run_id": run_id, "stage": stage, "config_hash": cfg.config_hash()}
    meta.update(extra or {})
    return json.dumps(meta, sort_keys=True)


def write_table(
    df: DataFrame,
    cfg: Config,
    name: str,
    run_id: str,
    stage: str,
    replace_where: str | None = None,
    partition_by: tuple[str, ...] = (),
) -> WriteResult:
    """Overwrite a table (or exactly the slice `replace_where` owns) unless its content is already identical.

    Comparing content fingerprints makes a re-run on the same input a no-op: no new Delta version. Each write
    records its fingerprint in the commit's userMetadata, so the next write compares against that instead of
    reading and hashing the whole old table again (`recorded_fingerprint` says when the record can be trusted).
    """
    path = cfg.table_path(name)
    df = with_comments(df.select(*[f.name for f in SCHEMAS[name].fields]) if name in SCHEMAS else df, name)
    # Materialised once for the fingerprint and the write: otherwise a changed table computes its whole lineage
    # (parsing, UDFs, joins) twice, and what is written is exactly what was fingerprinted.
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _write_if_changed(df, cfg, name, path, run_id, stage, replace_where, partition_by)
    finally:
        df.unpersist()


def _slice_stamp(columns: list[str], replace_where: str | None) -> str:
    """What a recorded fingerprint covers: the columns it hashed and the slice (replaceWhere) it replaced."""
    return json.dumps({"columns": sorted(c for c in columns if c not in RUN_ID_COLUMNS), "slice": replace_where or ""},
                      sort_keys=True)


def recorded_fingerprint(spark: SparkSession, path: str, stamp: str) -> tuple[int, int, int] | None:
    """The fingerprint the table's latest commit recorded, when that commit is a `write_table` overwrite of the
    same columns and slice: the table (slice) then holds exactly what was fingerprinted. Any other latest commit
    (a MERGE, DELETE or UPDATE, another slice, a write by another tool or by an older version of this code) gives
    None, and the caller fingerprints the table itself."""
    from delta.tables import DeltaTable

    row = (DeltaTable.forPath(spark, path).history(1).select("operation", "userMetadata", "operationMetrics")
           .first())
    if row is None or row["operation"] != "WRITE" or not row["userMetadata"]:
        return None
    try:
        meta = json.loads(row["userMetadata"])
    except ValueError:
        return None
    fp = meta.get(FINGERPRINT_KEY) if isinstance(meta, dict) else None
    if not isinstance(fp, list) or len(fp) != 3 or not all(type(v) is int for v in fp):
        return None
    # what the commit wrote must be what was hashed: a persisted input recomputed differently (a lost cache block
    # on a cluster) would otherwise be vouched for by a fingerprint of other rows
    written = dict(row["operationMetrics"] or {}).get("numOutputRows")
    if written is not None and str(written) != str(fp[0]):
        return None
    return (fp[0], fp[1], fp[2]) if meta.get(STAMP_KEY) == stamp else None


def _write_if_changed(df: DataFrame, cfg: Config, name: str, path: str, run_id: str, stage: str,
                      replace_where: str | None, partition_by: tuple[str, ...]) -> WriteResult:
    spark = df.sparkSession
    new_fp = fingerprint(df)
    exists = table_exists(spark, path)
    stamp = _slice_stamp(df.columns, replace_where)
    if exists:
        old_fp = recorded_fingerprint(spark, path, stamp)
        if old_fp is None:  # not recorded by the last commit: read the table (slice) and hash it
            old = spark.read.format("delta").load(path)
            if replace_where:
                old = old.where(replace_where)
            old_fp = fingerprint(old.select(*df.columns))
        if old_fp == new_fp:
            log.info("%s: content unchanged (%d rows), no new version", name, new_fp[0])
            register_table(spark, cfg, name)
            return WriteResult(name, None, new_fp[0], False)
    extra = {"rows": new_fp[0], FINGERPRINT_KEY: list(new_fp), STAMP_KEY: stamp}
    writer = (df.write.format("delta").mode("overwrite")
              .option("userMetadata", _user_metadata(run_id, stage, cfg, extra)))
    if replace_where and exists:
        writer = writer.option("replaceWhere", replace_where)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    for point in ("before_write", "during_write"):
        crash_point(stage, point, name)  # inert unless ETL_TEST_KILL_AT is set (crash-restart tests)
    writer.save(path)
    crash_point(stage, "after_write", name)
    register_table(spark, cfg, name)
    return WriteResult(name, current_version(spark, path), new_fp[0], True)


def merge_new_rows(df: DataFrame, cfg: Config, name: str, keys: tuple[str, ...], run_id: str, stage: str,
                   known_new: int | None = None) -> int:
    """Insert rows whose keys are not in the table yet (an append-only cache such as embeddings).

    `known_new`: the caller already left out the keys of the table's current version, persisted `df` (the MERGE
    reads its source more than once) and counted it (etl.io.memo, `add_missing`); the MERGE then takes the
    rows as they are, still inserting a key only when it is absent, and `known_new` is returned as given. Without
    it, the rows whose keys are new are counted here and that count is returned.
    """
    spark = df.sparkSession
    path = cfg.table_path(name)
    df = with_comments(df.dropDuplicates(list(keys)), name)
    if not table_exists(spark, path):
        df.write.format("delta").mode("overwrite").option(
            "userMetadata", _user_metadata(run_id, stage, cfg)).save(path)
        register_table(spark, cfg, name)
        return spark.read.format("delta").load(path).count()
    if known_new is not None:
        if known_new:
            _merge_absent(df, path, keys, run_id, stage, cfg)
        register_table(spark, cfg, name)
        return known_new
    existing = spark.read.format("delta").load(path).select(*keys)
    # Materialised once: the rows may come from an expensive UDF (the embedding model), which the count and the
    # MERGE (which reads its source more than once) would otherwise each run again.
    fresh = df.join(existing, on=list(keys), how="left_anti").persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n = fresh.count()
        if n:
            _merge_absent(fresh, path, keys, run_id, stage, cfg)
    finally:
        fresh.unpersist()
    register_table(spark, cfg, name)
    return n


def add_missing(rows: DataFrame, cfg: Config, name: str, keys: tuple[str, ...], run_id: str, stage: str) -> int:
    """Add a cache's missing entries: `rows` were computed for keys the table lacked when the caller looked (new
    texts' MinHash features or vectors). They are computed once (persisted), counted and merged as they are: the
    MERGE still inserts a key only when it is absent, so the second comparison against the whole table that
    `merge_new_rows` makes otherwise is skipped. Returns the number of rows given (computed now), which counts
    a key another writer stored meanwhile although the MERGE skips it.
    """
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n = rows.count()
        if n:
            merge_new_rows(rows, cfg, name, keys, run_id, stage, known_new=n)
        return n
    finally:
        rows.unpersist()


def insert_rows(df: DataFrame, cfg: Config, name: str, keys: tuple[str, ...], run_id: str, stage: str
                ) -> WriteResult:
    """Add `df` to an existing table as a MERGE inserting the rows whose keys it lacks: what `write_table` would
    write when the table's rows are all kept and `df` holds only new ones (ingest when only new objects arrived),
    without rewriting or fingerprinting the kept rows. The rows are computed once (persisted) and counted; no rows,
    no new version. A MERGE, not an append: a row already there (a crashed run's) is not added twice. The crash
    points are `write_table`'s. `rows` of the result is the number of rows given.
    """
    spark = df.sparkSession
    path = cfg.table_path(name)
    df = with_comments(df.select(*[f.name for f in SCHEMAS[name].fields]) if name in SCHEMAS else df, name)
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n = df.count()
        if not n:
            log.info("%s: no new rows, no new version", name)
            register_table(spark, cfg, name)
            return WriteResult(name, None, 0, False)
        for point in ("before_write", "during_write"):
            crash_point(stage, point, name)
        _merge_absent(df, path, keys, run_id, stage, cfg)
        crash_point(stage, "after_write", name)
    finally:
        df.unpersist()
    register_table(spark, cfg, name)
    log.info("%s: %d new rows inserted", name, n)
    return WriteResult(name, current_version(spark, path), n, True)


def _merge_absent(rows: DataFrame, path: str, keys: tuple[str, ...], run_id: str, stage: str, cfg: Config) -> None:
    """MERGE inserting the rows whose keys the table lacks, the run id and stage in the commit's userMetadata."""
    from delta.tables import DeltaTable

    spark = rows.sparkSession
    cond = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", _user_metadata(run_id, stage, cfg))
    try:
        DeltaTable.forPath(spark, path).alias("t").merge(rows.alias("s"), cond).whenNotMatchedInsertAll().execute()
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")


def register_table(spark: SparkSession, cfg: Config, name: str) -> None:
    """Register `<database>.<name>` over the Delta folder so analysts can query it by name."""
    path = cfg.table_path(name)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{cfg.database}`")
    spark.sql(f"CREATE TABLE IF NOT EXISTS `{cfg.database}`.`{name}` USING DELTA LOCATION '{path}'")


def register_all(spark: SparkSession, cfg: Config) -> list[str]:
    """Register every lake table that exists (a fresh session sees `lake.*` at once)."""
    done = []
    for name in SCHEMAS:
        if table_exists(spark, cfg.table_path(name)):
            register_table(spark, cfg, name)
            done.append(name)
    from etl.catalog import create_views

    create_views(spark, cfg, done)
    return done
