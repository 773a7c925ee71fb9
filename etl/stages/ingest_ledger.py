"""The ingest ledger (`lake.ingest_objects`): one row per raw object parsed, so a rerun parses only what changed.

An object is reused when the ledger holds it with the same key, ETag and family under the same `ingest_key` (a
digest of the reader, contract and PII settings and of the code that parses and redacts): its conversations and
quarantine rows are kept as they are (with the run id that produced them), and its counts come from the ledger.
New and changed objects are parsed; objects gone from the inventory drop out with their rows. A settings or code
change misses every ledger row, so everything is parsed again. The ledger is written last, after the tables it
describes, so a crash in between leaves objects to parse again, never rows that the ledger does not account for.
When every conversation row comes from a reused object (`only_additions`: nothing changed or removed, no crash
leftovers), ingest inserts the new objects' rows instead of rewriting the raw families' slice.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import pkgutil
from dataclasses import asdict

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from etl.code_digest import source_digest
from etl.config import Config
from etl.io import delta
from etl.schemas import INGEST_OBJECTS

KIND_CONVERSATION, KIND_QUARANTINE, KIND_STATS = "conversation", "quarantine", "stats"
REASON_UNREADABLE = "unreadable"  # the object could not be read (storage error): parse it again next run
RETRY = "_retry"


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """Digest of the source of the modules that decide what an object becomes (readers, contract, PII, parser)."""
    from etl import contract, pii, pii_patterns, pii_urls, readers
    from etl.stages import ingest

    modules = [importlib.import_module(f"etl.readers.{m.name}") for m in pkgutil.iter_modules(readers.__path__)]
    return source_digest(*sorted(modules, key=lambda m: m.__name__), readers, contract, pii, pii_patterns,
                         pii_urls, ingest)


def ingest_key(cfg: Config) -> str:
    """Every input of an object's rows besides its bytes: families (format, options), ingest and PII settings, code."""
    settings = {"families": sorted((f.name, f.format, json.dumps(f.options, sort_keys=True, default=str))
                                   for f in cfg.raw_families()),
                "ingest": asdict(cfg.ingest), "pii": asdict(cfg.pii), "code": _code_digest()}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:24]


def stored(ledger: DataFrame) -> DataFrame:
    """The ledger rows to write: objects read whole (an unreadable object is parsed again next run)."""
    return ledger.where(~F.col(RETRY)).drop(RETRY)


def split_objects(spark: SparkSession, cfg: Config, objs: DataFrame, key: str) -> tuple[DataFrame, DataFrame]:
    """(ledger rows of the objects to reuse, objects to parse) for the mapped objects `objs` (key, uri, etag, family)."""
    ledger = delta.read_table(spark, cfg, INGEST_OBJECTS).where(F.col("ingest_key") == key)
    reused = ledger.join(objs.select("key", "etag", "family"), ["key", "etag", "family"], how="left_semi")
    todo = objs.join(reused.select("key"), "key", how="left_anti")
    return reused, todo


def kept_rows(table: DataFrame, reused: DataFrame) -> DataFrame:
    """Rows of conversations / quarantine that came from reused objects."""
    return table.join(reused.select(F.col("key").alias("source_uri")), "source_uri", how="left_semi")


def only_additions(table: DataFrame, reused: DataFrame) -> bool:
    """True when every row of `table` (a lake table, or the raw slice of one) came from a reused object: the rows
    `kept_rows` keeps are then all of them, and the parsed objects' rows can be added without rewriting the rest.
    A changed or removed object, a settings change (nothing reused) or rows a crashed run left from an object the
    ledger does not hold make this False."""
    uris = table.select("source_uri").distinct()
    return uris.join(reused.select(F.col("key").alias("source_uri")), "source_uri", how="left_anti").isEmpty()


def new_ledger_rows(parsed: DataFrame, todo: DataFrame, key: str, run_id: str) -> DataFrame:
    """One ledger row per parsed object: its reader's record count, rows written and PII findings by type, and
    RETRY (not stored) for an object that could not be read: it counts in this run's reconciliation but is left
    out of the stored ledger, so the next run reads it again instead of keeping its `unreadable` quarantine row."""
    per_obj = parsed.groupBy(F.col("source_uri").alias("key")).agg(
        F.sum(F.when(F.col("kind") == KIND_STATS, F.col("records_read")).otherwise(0)).alias("records_read"),
        F.sum((F.col("kind") == KIND_CONVERSATION).cast("long")).alias("conversations"),
        F.sum((F.col("kind") == KIND_QUARANTINE).cast("long")).alias("quarantined"),
        F.max((F.col("reason") == REASON_UNREADABLE).cast("int")).alias("unreadable"))
    pii = (parsed.where(F.col("kind") == KIND_CONVERSATION)
           .select(F.col("source_uri").alias("key"),
                   F.explode(F.from_json("pii_json", "map<string,long>")).alias("pii_type", "n"))
           .where(F.col("n") > 0)
           .groupBy("key", "pii_type").agg(F.sum("n").alias("n"), F.count(F.lit(1)).alias("c"))
           .groupBy("key").agg(  # sorted entries: the map (and the table's fingerprint) must not depend on task order
               F.map_from_entries(F.array_sort(F.collect_list(F.struct("pii_type", "n")))).alias("pii_findings"),
               F.map_from_entries(F.array_sort(F.collect_list(F.struct("pii_type", "c")))).alias("pii_conversations")))
    empty = F.create_map().cast("map<string,long>")
    return (todo.select("key", "etag", "family").join(per_obj, "key", how="left").join(pii, "key", how="left")
            .select("key", "etag", "family", F.lit(key).alias("ingest_key"),
                    *[F.coalesce(F.col(c), F.lit(0)).cast("long").alias(c)
                      for c in ("records_read", "conversations", "quarantined")],
                    F.coalesce("pii_findings", empty).alias("pii_findings"),
                    F.coalesce("pii_conversations", empty).alias("pii_conversations"),
                    F.lit(run_id).alias("ingest_run_id"),
                    F.coalesce(F.col("unreadable") == 1, F.lit(False)).alias(RETRY)))


def pii_findings(ledger: DataFrame) -> DataFrame:
    """PII_FINDINGS rows (family, pii_type, findings, conversations) summed over the ledger's objects."""
    found = ledger.select("family", F.explode("pii_findings").alias("pii_type", "findings"), "pii_conversations")
    return (found.select("family", "pii_type", "findings", F.col("pii_conversations")[F.col("pii_type")].alias("c"))
            .groupBy("family", "pii_type")
            .agg(F.sum("findings").cast("long").alias("findings"),
                 F.sum(F.coalesce("c", F.lit(0))).cast("long").alias("conversations")))
