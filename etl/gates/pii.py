"""pii gate: `etl.pii.find_pii` finds nothing in any exported text.

Scanned: every message of `messages`, `prompt`, `chosen` and `rejected`, phase A `text`, and the free-text
metadata fields named in `verify.pii_metadata_fields`. Examples name the record, field, type and offsets, never
the matched text, so the gate report does not leak what it found.
"""

from __future__ import annotations

import json
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from etl.gates.base import GateResult, ReleaseView, summarise

GATE = "pii"
MESSAGE_FIELDS = ("messages", "prompt", "chosen", "rejected")

PII_HITS_SCHEMA = StructType([
    StructField("record_key", StringType(), True),
    StructField("shard", StringType(), True),
    StructField("field", StringType(), False),
    StructField("pii_type", StringType(), False),
    StructField("start", IntegerType(), False),
    StructField("end", IntegerType(), False),
])


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


def pii_hits_frame(pdf: pd.DataFrame, metadata_fields: tuple[str, ...]) -> pd.DataFrame:
    """pandas: records (JSON text columns) -> one row per PII span found (PII_HITS_SCHEMA)."""
    from etl.pii import find_pii

    out = []
    for row in pdf.to_dict("records"):
        for field, text in record_texts(row, metadata_fields):
            for span in find_pii(text):
                start, end, pii_type = span[0], span[1], span[2]
                out.append((row["record_key"], row["shard"], field, str(pii_type), int(start), int(end)))
    return pd.DataFrame(out, columns=[f.name for f in PII_HITS_SCHEMA.fields])


def pii_hits(records: DataFrame, metadata_fields: tuple[str, ...]) -> DataFrame:
    """Every PII span in the exported texts, via mapInPandas around `pii_hits_frame`."""
    fields = tuple(metadata_fields)

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield pii_hits_frame(pdf, fields)

    as_json = records.select("record_key", "shard", "text", *[F.to_json(c).alias(c) for c in MESSAGE_FIELDS],
                             F.to_json("metadata").alias("metadata"))
    return as_json.mapInPandas(fn, PII_HITS_SCHEMA)


def check(view: ReleaseView) -> GateResult:
    """Fail on any detector hit; the figures count hits per type and records with a hit."""
    hits = pii_hits(view.records, tuple(view.cfg.verify.pii_metadata_fields))
    by_type, found = summarise(hits, "pii_type", ["shard", "record_key", "field", "start"], view.max_examples)
    total = sum(by_type.values())
    return GateResult(GATE, total == 0, {"hits": total, "hits_by_type": by_type}, found)
