"""pii gate: `etl.pii.find_pii` finds nothing in any exported text.

Scanned: every message of `messages`, `prompt`, `chosen` and `rejected`, phase A `text`, and the free-text
metadata fields named in `verify.pii_metadata_fields`. Examples name the record, field, type and offsets, never
the matched text, so the gate report does not leak what it found. Spans are kept per record bytes in
lake.pii_scans (`etl.io.memo`), so a rerun runs the detector over new or changed records only.
"""

from __future__ import annotations

import json
import sys
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from etl.code_digest import source_digest
from etl.gates.base import GateResult, ReleaseView, summarise
from etl.io import memo
from etl.schemas import PII_SCANS, PII_SCANS_SCHEMA

GATE = "pii"
MESSAGE_FIELDS = ("messages", "prompt", "chosen", "rejected")


def code_digest(metadata_fields: tuple[str, ...]) -> str:
    """Names what a stored scan depends on: the detector, its patterns, this module and the scanned metadata."""
    from etl import pii as detector, pii_patterns, pii_urls

    return source_digest(detector, pii_patterns, pii_urls, sys.modules[__name__]) + "|" + ",".join(metadata_fields)


def record_texts(row: dict, metadata_fields: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(field label, text) for every exported text of one record; message fields arrive as JSON strings."""
    for field in MESSAGE_FIELDS:
        for i, msg in enumerate(json.loads(row[field]) if isinstance(row.get(field), str) else []):
            if isinstance(msg, dict) and isinstance(msg.get("content"), str):
                yield f"{field}[{i}]", msg["content"]
    if isinstance(row.get("text"), str):
        yield "text", row["text"]
    metadata = json.loads(row["metadata"]) if isinstance(row.get("metadata"), str) else {}
    for key in metadata_fields:
        if isinstance(metadata.get(key), str):
            yield f"metadata.{key}", metadata[key]


def record_spans(row: dict, metadata_fields: tuple[str, ...]) -> list[tuple[str, str, int, int]]:
    """(field, pii_type, start, end) of every PII span in one record's exported texts."""
    from etl.pii import find_pii

    return [(field, str(span[2]), int(span[0]), int(span[1]))
            for field, text in record_texts(row, metadata_fields) for span in find_pii(text)]


def scans_frame(pdf: pd.DataFrame, metadata_fields: tuple[str, ...], digest: str) -> pd.DataFrame:
    """pandas: records (key + JSON text columns) -> PII_SCANS_SCHEMA rows, one per record."""
    out = [(digest, row[memo.KEY], [dict(zip(("field", "pii_type", "start", "end"), s))
                                    for s in record_spans(row, metadata_fields)])
           for row in pdf.to_dict("records")]
    return pd.DataFrame(out, columns=[f.name for f in PII_SCANS_SCHEMA.fields])


def scanned(records: DataFrame, metadata_fields: tuple[str, ...]) -> DataFrame:
    """The scan inputs: record_key, shard, the memo key and the scanned fields as JSON text."""
    fields = [F.col("text"), *[F.col(c) for c in MESSAGE_FIELDS],
              *[F.col("metadata").getItem(k).alias(f"metadata.{k}") for k in metadata_fields]]
    return records.select("record_key", "shard", memo.key_of(*fields).alias(memo.KEY), "text",
                          *[F.to_json(c).alias(c) for c in MESSAGE_FIELDS], F.to_json("metadata").alias("metadata"))


def scan(missing: DataFrame, metadata_fields: tuple[str, ...], digest: str) -> DataFrame:
    """PII_SCANS rows for `missing` (rows of `scanned`), via mapInPandas around `scans_frame`."""
    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield scans_frame(pdf, metadata_fields, digest)

    return missing.drop("record_key", "shard").mapInPandas(fn, PII_SCANS_SCHEMA)


def check(view: ReleaseView) -> GateResult:
    """Fail on any detector hit; the figures count hits per type and records with a hit.

    Records whose scanned bytes were scanned before by the same code and settings take their spans from
    lake.pii_scans (`etl.io.memo`); the rest go through the detector.
    """
    fields = tuple(view.cfg.verify.pii_metadata_fields)
    digest = code_digest(fields)
    inputs = scanned(view.records, fields)
    with memo.recalled(view.spark, view.cfg, PII_SCANS, digest, inputs, lambda m: scan(m, fields, digest),
                       view.run_id, "verify", enabled=view.cfg.verify.memo) as (scans, computed):
        view.memo_computed[PII_SCANS] = view.memo_computed.get(PII_SCANS, 0) + computed
        spans = scans.where(F.size("spans") > 0).select(memo.KEY, F.explode("spans").alias("s"))
        hits = (inputs.select("record_key", "shard", memo.KEY).join(spans, memo.KEY)
                .select("record_key", "shard", "s.field", "s.pii_type", "s.start", "s.end"))
        by_type, found = summarise(hits, "pii_type", ["shard", "record_key", "field", "start"], view.max_examples)
    total = sum(by_type.values())
    return GateResult(GATE, total == 0, {"hits": total, "hits_by_type": by_type}, found)
