"""The release directory on local disk: manifest, shard files and their records, read for verify and upload.

Layout (written by export): `<release_dir>/<phase>/<stage>/<split>-NNNNN-of-MMMMM.jsonl[.gz]` plus
`<release_dir>/manifest.json`. Paths in the manifest are relative to the release root.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, MapType, StringType, StructField, StructType

MANIFEST_FILE = "manifest.json"
GATE_REPORT_FILE = "gate_report.json"
CROISSANT_FILE = "croissant.json"
JOURNAL_FILE = ".upload_journal.jsonl"
SHARD_SUFFIXES = (".jsonl", ".jsonl.gz")

KIND_SFT, KIND_TEXT, KIND_PREFERENCE, KIND_UNKNOWN = "sft", "text", "preference", "unknown"
CORRUPT = "_corrupt_record"

# One shard line as read back: every line shape of the export in one nullable schema (Spark fills what is there).
# Metadata values that are not JSON strings (numbers, lists) are kept as their JSON text.
_LINE_MESSAGE = StructType([StructField("role", StringType(), True), StructField("content", StringType(), True)])
_LINE_MESSAGES = ArrayType(_LINE_MESSAGE, True)
RELEASE_LINE_SCHEMA = StructType([
    StructField("messages", _LINE_MESSAGES, True),
    StructField("text", StringType(), True),
    StructField("prompt", _LINE_MESSAGES, True),
    StructField("chosen", _LINE_MESSAGES, True),
    StructField("rejected", _LINE_MESSAGES, True),
    StructField("metadata", MapType(StringType(), StringType(), True), True),
    StructField(CORRUPT, StringType(), True),
])


class ReleaseError(ValueError):
    """The release directory is missing or malformed; the message names the file."""


def manifest_path(release_dir: str) -> str:
    """`<release_dir>/manifest.json`."""
    return os.path.join(release_dir, MANIFEST_FILE)


def read_manifest(release_dir: str) -> dict:
    """The parsed manifest.json of a release; one-line ReleaseError when absent or not JSON."""
    path = manifest_path(release_dir)
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise ReleaseError(f"{path}: no manifest; run the export stage first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReleaseError(f"{path}: not valid JSON ({exc}); re-run export") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards", []), list):
        raise ReleaseError(f"{path}: expected an object with a `shards` list; re-run export")
    return manifest


def file_sha256(path: str) -> tuple[str, int]:
    """(sha256 hex, bytes) of a local file, streamed."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def count_records(path: str) -> int:
    """Non-blank lines of a shard (gzip when the name ends in .gz)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def is_safe_relpath(rel: object) -> bool:
    """A relative POSIX path that stays under its root: no absolute path, `..`, `.`, empty part or backslash."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\x00" in rel:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def local_path(release_dir: str, rel: str) -> str:
    """Absolute local path of a release-relative path; ReleaseError when it would leave the release root."""
    root = os.path.realpath(release_dir)
    if not is_safe_relpath(rel):
        raise ReleaseError(f"{rel!r}: manifest path is not a safe relative path under {root}")
    path = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, path]) != root:
        raise ReleaseError(f"{rel!r}: resolves outside the release root {root} (symlink?)")
    return path


def shard_files_on_disk(release_dir: str) -> list[str]:
    """Release-relative paths of every shard-like file under the release root, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(release_dir):
        dirnames.sort()
        for name in filenames:
            if name.endswith(SHARD_SUFFIXES):
                out.append(os.path.relpath(os.path.join(dirpath, name), release_dir).replace(os.sep, "/"))
    return sorted(out)


def shard_path_parts(rel: str) -> tuple[str | None, str | None, str | None]:
    """(phase, stage, split) as the layout `<phase>/<stage>/<split>-NNNNN-of-MMMMM.jsonl` spells them."""
    parts = rel.split("/")
    if len(parts) != 3:
        return None, None, None
    return parts[0], parts[1], parts[2].split("-", 1)[0]


def _meta(key: str) -> Column:
    return F.col("metadata").getItem(key)


def with_record_columns(lines: DataFrame) -> DataFrame:
    """Shard lines (+ `file_path`) -> records with shard, phase, stage, split (from the path), kind and record_key."""
    parts = F.split(F.col("file_path"), "/")
    shard = F.concat_ws("/", F.slice(parts, -3, 3))
    content_key = F.sha2(F.to_json(F.struct("messages", "text", "prompt", "chosen", "rejected")), 256)
    kind = (F.when(F.col("messages").isNotNull(), F.lit(KIND_SFT))
            .when(F.col("prompt").isNotNull(), F.lit(KIND_PREFERENCE))
            .when(F.col("text").isNotNull(), F.lit(KIND_TEXT))
            .otherwise(F.lit(KIND_UNKNOWN)))
    return lines.select(
        shard.alias("shard"),
        F.element_at(parts, -3).alias("phase"),
        F.element_at(parts, -2).alias("stage"),
        F.substring_index(F.element_at(parts, -1), "-", 1).alias("split"),
        kind.alias("kind"),
        F.coalesce(_meta("pair_id"), _meta("conversation_id"), content_key).alias("record_key"),
        _meta("conversation_id").alias("conversation_id"),
        _meta("family").alias("family"),
        _meta("split").alias("meta_split"),
        _meta("content_hash").alias("content_hash"),
        "messages", "text", "prompt", "chosen", "rejected", "metadata",
        F.col(CORRUPT).alias("corrupt_record"),
    )


def listed_shards(release_dir: str, manifest: dict) -> list[str]:
    """Local paths of the manifest's shards that are safe and exist (the hash gate reports the others)."""
    paths = []
    for shard in manifest.get("shards", []):
        try:
            path = local_path(release_dir, shard.get("path"))
        except ReleaseError:
            continue
        if os.path.isfile(path):
            paths.append(path)
    return sorted(set(paths))


def read_release_records(spark: SparkSession, release_dir: str, manifest: dict | None = None) -> DataFrame:
    """Every record of every listed shard, one row each, with its shard, phase, stage, split, kind and key."""
    manifest = manifest if manifest is not None else read_manifest(release_dir)
    paths = listed_shards(release_dir, manifest)
    if not paths:
        empty = spark.createDataFrame([], RELEASE_LINE_SCHEMA).withColumn("file_path", F.lit(None).cast("string"))
        return with_record_columns(empty)
    lines = (spark.read.schema(RELEASE_LINE_SCHEMA).option("mode", "PERMISSIVE")
             .option("columnNameOfCorruptRecord", CORRUPT).json(paths))
    return with_record_columns(lines.select("*", F.col("_metadata.file_path").alias("file_path")))
