"""ingest: raw objects -> `conversations` (ChatML contract, PII-redacted) + `quarantine`, reconciled per object."""

from __future__ import annotations

import json
import logging
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from etl import contract
from etl.config import Config
from etl.io import delta, objects
from etl.schemas import CONVERSATIONS, INGEST_OBJECTS, MESSAGES, PII_FINDINGS, QUARANTINE
from etl.stages import ingest_ledger as ledger
from etl.stages import inventory as inv

log = logging.getLogger(__name__)

KIND_CONVERSATION, KIND_QUARANTINE, KIND_STATS = ledger.KIND_CONVERSATION, ledger.KIND_QUARANTINE, ledger.KIND_STATS

# Output of the parsing UDF: one row per record (conversation or quarantine) plus one stats row per object.
PARSED_SCHEMA = StructType([
    StructField("kind", StringType(), False),
    StructField("conversation_id", StringType(), True),
    StructField("family", StringType(), True),
    StructField("source_uri", StringType(), False),
    StructField("source_etag", StringType(), True),
    StructField("source_locator", StringType(), False),
    StructField("messages_json", StringType(), True),
    StructField("metadata_json", StringType(), True),
    StructField("topic", StringType(), True),
    StructField("quality_score", StringType(), True),
    StructField("content_hash", StringType(), True),
    StructField("turn_count", IntegerType(), True),
    StructField("char_count", IntegerType(), True),
    StructField("pii_json", StringType(), True),
    StructField("reason", StringType(), True),
    StructField("detail", StringType(), True),
    StructField("raw_text", StringType(), True),
    StructField("records_read", LongType(), True),
])


def parse_objects_fn(families: dict, cfg: Config):
    """Build the mapInPandas function that reads each listed object with its format's reader."""
    from etl.readers import ReaderLimits

    limits = ReaderLimits(max_record_bytes=cfg.ingest.max_record_bytes, max_message_chars=cfg.ingest.max_message_chars)
    raw_chars = cfg.ingest.quarantine_raw_chars
    redact = cfg.pii.enabled
    endpoint = cfg.s3_endpoint_url

    def parse(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            out: list[dict] = []
            for obj in batch.itertuples(index=False):
                fmt, options = families[obj.family]
                out.extend(parse_object(obj.key, obj.uri, obj.etag, obj.family, fmt, options, limits, raw_chars,
                                        redact, endpoint))
            yield pd.DataFrame(out, columns=[f.name for f in PARSED_SCHEMA.fields])

    return parse


def parse_object(key, uri, etag, family, fmt, options, limits, raw_chars, redact, endpoint) -> list[dict]:
    """All records of one object as parsed rows, plus its stats row (pure Python, testable without Spark)."""
    from etl.pii import redact_messages
    from etl.readers import read_object

    base = {f.name: None for f in PARSED_SCHEMA.fields}
    rows: list[dict] = []
    try:
        stream = objects.open_object(uri, endpoint, expected_etag=etag)  # the version inventory listed
    except objects.StorageError as exc:
        rows.append({**base, "kind": KIND_QUARANTINE, "family": family, "source_uri": key, "source_etag": etag,
                     "source_locator": "object", "reason": ledger.REASON_UNREADABLE, "detail": str(exc),
                     "raw_text": ""})
        rows.append({**base, "kind": KIND_STATS, "family": family, "source_uri": key, "source_locator": "object",
                     "records_read": 1})
        return [valid_utf8(r) for r in rows]
    n = 0
    with stream:
        for rec in read_object(fmt, stream, options, limits):
            n += 1
            common = {**base, "family": family, "source_uri": key, "source_etag": etag, "source_locator": rec.locator}
            if rec.error:
                rows.append({**common, "kind": KIND_QUARANTINE, "reason": rec.error, "detail": rec.detail[:2000],
                             "raw_text": (rec.raw_text or "")[:raw_chars]})
                continue
            messages, findings = redact_messages(rec.messages) if redact else (rec.messages, {})
            metadata = dict(rec.metadata)
            for field in ("rejected_messages", "chosen_messages_tail"):
                if redact and metadata.get(field):
                    metadata[field] = json.dumps(redact_messages(json.loads(metadata[field]))[0])
            rows.append({
                **common, "kind": KIND_CONVERSATION,
                "conversation_id": contract.conversation_id(family, key, rec.locator),
                "messages_json": json.dumps(messages, ensure_ascii=False),
                "metadata_json": json.dumps(metadata, ensure_ascii=False),
                "topic": rec.topic,
                "quality_score": None if rec.quality_score is None else repr(float(rec.quality_score)),
                "content_hash": contract.content_hash(messages),
                "turn_count": len(messages),
                "char_count": sum(len(m["content"]) for m in messages),
                "pii_json": json.dumps(findings),
            })
    rows.append({**base, "kind": KIND_STATS, "family": family, "source_uri": key, "source_locator": "object",
                 "records_read": n})
    return [valid_utf8(r) for r in rows]


def valid_utf8(row: dict) -> dict:
    """The row with lone surrogates (JSON `\\ud800` escapes) as "?": Arrow rejects them, failing the whole ingest."""
    return {k: v.encode("utf-8", "replace").decode("utf-8") if isinstance(v, str) else v for k, v in row.items()}


def conversations_from_parsed(parsed: DataFrame, run_id: str, pii_enabled: bool) -> DataFrame:
    """Parsed conversation rows -> the conversations contract."""
    return parsed.where(F.col("kind") == KIND_CONVERSATION).select(
        "conversation_id", "family", "source_uri", "source_etag", "source_locator",
        F.lit(run_id).alias("ingest_run_id"),
        F.from_json("messages_json", MESSAGES).alias("messages"),
        "content_hash",
        F.from_json("metadata_json", "map<string,string>").alias("metadata"),
        "topic", "turn_count", "char_count",
        F.col("quality_score").cast("double").alias("quality_score"),
        F.lit(pii_enabled).alias("pii_redacted"),
        F.lit(None).cast("string").alias("parent_id"),
    )


def quarantine_from_parsed(parsed: DataFrame, run_id: str) -> DataFrame:
    return parsed.where(F.col("kind") == KIND_QUARANTINE).select(
        "family", "source_uri", "source_locator", "reason", "detail", "raw_text",
        F.lit(run_id).alias("ingest_run_id"))


def reconcile(ledger_rows: DataFrame, conversations: DataFrame, quarantine: DataFrame) -> list[dict]:
    """Per family: records read (the readers' counts, from the ledger) vs conversations + quarantined (as written)."""
    read = ledger_rows.groupBy("family").agg(F.sum("records_read").alias("records_read"))
    conv = conversations.groupBy("family").agg(F.count(F.lit(1)).alias("conversations"))
    quar = quarantine.groupBy("family").agg(F.count(F.lit(1)).alias("quarantined"))
    joined = (read.join(conv, "family", how="full").join(quar, "family", how="full").na.fill(0).orderBy("family"))
    return [r.asDict() for r in joined.collect()]


def mapped_objects(inventory: DataFrame) -> DataFrame:
    return inventory.where(F.col("status") == inv.STATUS_MAPPED).select("key", "uri", "etag", "family")


def parse(spark: SparkSession, cfg: Config, todo: DataFrame, n_todo: int) -> DataFrame:
    """The parsed rows (PARSED_SCHEMA) of the objects to parse, one task per object up to 64."""
    if not n_todo:
        return spark.createDataFrame([], PARSED_SCHEMA)
    families = {f.name: (f.format, f.options) for f in cfg.raw_families()}
    return (todo.repartition(min(n_todo, 64), "key")
            .mapInPandas(parse_objects_fn(families, cfg), PARSED_SCHEMA))


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Parse every new or changed mapped object once (the ledger says which: etl.stages.ingest_ledger), write
    conversations, quarantine and PII findings with the rows of unchanged objects kept, then reconcile."""
    inventory = delta.read_table(spark, cfg, "inventory")
    objs = mapped_objects(inventory)
    key = ledger.ingest_key(cfg)
    reused, todo = ledger.split_objects(spark, cfg, objs, key)
    reused, todo = reused.persist(), todo.persist()
    n_objs, n_todo = objs.count(), todo.count()
    parsed = parse(spark, cfg, todo, n_todo).persist()
    raw_names = ", ".join(f"'{f.name}'" for f in cfg.raw_families()) or "''"
    cached = [parsed, reused, todo]
    try:
        old_conv = delta.read_table(spark, cfg, CONVERSATIONS).where(f"family IN ({raw_names})")
        new_conv = conversations_from_parsed(parsed, run_id, cfg.pii.enabled)
        # only new objects (every row there is kept): add their rows instead of rewriting the whole raw slice
        add_only = delta.table_exists(spark, cfg.table_path(CONVERSATIONS)) and ledger.only_additions(old_conv, reused)
        quar = quarantine_from_parsed(parsed, run_id).unionByName(
            ledger.kept_rows(delta.read_table(spark, cfg, QUARANTINE), reused))
        all_objects = ledger.new_ledger_rows(parsed, todo, key, run_id).unionByName(
            reused.withColumn(ledger.RETRY, F.lit(False))).persist()
        cached.append(all_objects)
        if add_only:
            w_conv = delta.insert_rows(new_conv, cfg, CONVERSATIONS, ("conversation_id",), run_id, "ingest")
        else:
            w_conv = delta.write_table(new_conv.unionByName(ledger.kept_rows(old_conv, reused)), cfg, CONVERSATIONS,
                                       run_id, "ingest", replace_where=f"family IN ({raw_names})")
        w_quar = delta.write_table(quar, cfg, QUARANTINE, run_id, "ingest")
        delta.write_table(ledger.pii_findings(all_objects), cfg, PII_FINDINGS, run_id, "ingest")
        written_conv = delta.read_table(spark, cfg, CONVERSATIONS).where(f"family IN ({raw_names})")
        written_quar = delta.read_table(spark, cfg, QUARANTINE)
        recon = reconcile(all_objects, written_conv, written_quar)
        bad = [r for r in recon if r["records_read"] != r["conversations"] + r["quarantined"]]
        if bad:
            raise RuntimeError(f"ingest: records lost for families {[r['family'] for r in bad]}: {bad}")
        delta.write_table(ledger.stored(all_objects), cfg, INGEST_OBJECTS, run_id, "ingest")  # last: it vouches
        # for the rows above
    finally:
        for df in cached:
            df.unpersist()
    n_conv = sum(r["conversations"] for r in recon)
    log.info("ingest: %d objects parsed, %d unchanged reused; conversations %s", n_todo, n_objs - n_todo,
             f"{w_conv.rows} added to the kept rows" if add_only else "rewritten" if w_conv.changed else "unchanged")
    log.info("ingest reconciliation (records read = conversations + quarantined):\n%s", format_reconciliation(recon))
    records = {r["family"]: r["conversations"] for r in recon}
    cov = inv.coverage([r.asDict() for r in inventory.collect()], cfg, records)
    inv.write_coverage(cfg, cov)
    log.info("coverage:\n%s", inv.format_coverage(cov))
    return {
        "objects": n_objs, "objects_parsed": n_todo, "objects_reused": n_objs - n_todo,
        "records_read": sum(r["records_read"] for r in recon),
        "conversations": n_conv, "quarantined": w_quar.rows,
        "conversations_changed": w_conv.changed, "conversations_written": "added" if add_only else "slice",
        "by_family": recon,
    }


def format_reconciliation(recon: list[dict]) -> str:
    lines = [f"{'family':<26}{'read':>8}{'conversations':>15}{'quarantined':>13}"]
    for r in recon:
        lines.append(f"{str(r['family']):<26}{r['records_read']:>8}{r['conversations']:>15}{r['quarantined']:>13}")
    return "\n".join(lines)
