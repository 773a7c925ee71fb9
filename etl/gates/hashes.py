"""hash gate: the shards on disk are the shards the manifest describes, and every SFT record's hash recomputes.

File level (plain Python, streamed): each listed shard path is safe, exists, and has the manifest's sha256, bytes
and records; its phase/stage/split agree with its path; no unlisted shard file sits in the release. Record
level (Spark): no line fails to parse, and `metadata.content_hash` of every SFT record equals
`etl.contract.content_hash(messages)` (the one content-hash function of the contract).
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from etl import contract
from etl.gates.base import GateResult, ReleaseView, summarise
from etl.io import release
from etl.io.release import KIND_SFT

GATE = "hash"
PROBLEM_CORRUPT = "line is not a JSON object"
PROBLEM_STALE = "content_hash does not recompute"

HASH_MISMATCH_SCHEMA = StructType([
    StructField("record_key", StringType(), True),
    StructField("shard", StringType(), True),
    StructField("content_hash", StringType(), True),
    StructField("recomputed", StringType(), True),
])


def shard_problems(release_dir: str, shards: list[dict]) -> list[dict]:
    """Problems of the manifest's shard entries against the files on disk (plain Python)."""
    problems = []
    for entry in shards:
        rel = entry.get("path")
        try:
            path = release.local_path(release_dir, rel)
        except release.ReleaseError as exc:
            problems.append({"shard": rel, "problem": str(exc)})
            continue
        if not os.path.isfile(path):
            problems.append({"shard": rel, "problem": "listed in the manifest but missing on disk"})
            continue
        sha, size = release.file_sha256(path)
        facts = {"sha256": sha, "bytes": size, "records": release.count_records(path)}
        for key, actual in facts.items():
            if entry.get(key) != actual:
                problems.append({"shard": rel, "problem": f"{key} {actual} != manifest {entry.get(key)}"})
        if release.shard_path_parts(rel) != (entry.get("phase"), entry.get("stage"), entry.get("split")):
            problems.append({"shard": rel, "problem": "phase/stage/split differ from the shard's path"})
    listed = {e.get("path") for e in shards}
    problems += [{"shard": rel, "problem": "shard file not listed in the manifest"}
                 for rel in release.shard_files_on_disk(release_dir) if rel not in listed]
    return problems


def hash_mismatches_frame(pdf: pd.DataFrame) -> pd.DataFrame:
    """pandas: (record_key, shard, content_hash, messages_json) -> rows whose content hash does not recompute."""
    out = []
    for key, shard, stored, messages in zip(pdf["record_key"], pdf["shard"], pdf["content_hash"], pdf["messages_json"]):
        recomputed = contract.content_hash(json.loads(messages)) if isinstance(messages, str) else None
        if recomputed is None or recomputed != stored:
            out.append((key, shard, stored, recomputed))
    return pd.DataFrame(out, columns=[f.name for f in HASH_MISMATCH_SCHEMA.fields])


def hash_mismatches(records: DataFrame) -> DataFrame:
    """SFT records whose metadata content_hash differs from the recomputed one (mapInPandas)."""
    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield hash_mismatches_frame(pdf)

    sft = records.where(F.col("kind") == KIND_SFT).select(
        "record_key", "shard", "content_hash", F.to_json("messages").alias("messages_json"))
    return sft.mapInPandas(fn, HASH_MISMATCH_SCHEMA)


def check(view: ReleaseView) -> GateResult:
    """Fail on any shard whose bytes differ from the manifest, an unparsable line or a stale content hash."""
    files = shard_problems(view.release_dir, view.manifest.get("shards", []) or [])
    corrupt = view.records.where(F.col("corrupt_record").isNotNull()).select(
        "shard", "record_key", F.lit(PROBLEM_CORRUPT).alias("problem"))
    stale = hash_mismatches(view.records).select("shard", "record_key", F.lit(PROBLEM_STALE).alias("problem"))
    by_problem, found = summarise(corrupt.unionByName(stale), "problem", ["shard", "record_key"], view.max_examples)
    figures = {"shards_listed": len(view.manifest.get("shards", []) or []), "shard_problems": len(files),
               "corrupt_lines": by_problem.get(PROBLEM_CORRUPT, 0),
               "content_hash_mismatches": by_problem.get(PROBLEM_STALE, 0)}
    return GateResult(GATE, not files and not by_problem, figures, (files + found)[: view.max_examples])
