"""inventory: every raw object, mapped to a family by the routing config, plus a coverage report."""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from functools import lru_cache

from pyspark.sql import DataFrame, SparkSession

from etl.config import SOURCE_RAW, Config, FamilyConf, join_uri
from etl.io import delta, objects
from etl.schemas import INVENTORY, INVENTORY_SCHEMA

log = logging.getLogger(__name__)

STATUS_MAPPED, STATUS_UNMAPPED, STATUS_IGNORED = "mapped", "unmapped", "ignored"
STATUS_EMPTY, STATUS_UNREADABLE = "empty", "unreadable"
COVERAGE_PRESENT, COVERAGE_PARTIAL, COVERAGE_MISSING = "present", "partial", "missing"
COVERAGE_GENERATED = "generated"


@lru_cache(maxsize=512)
def glob_regex(pattern: str) -> re.Pattern:
    """Glob with `**` spanning folders (`**/` also matches no folder), `*` and `?` within one folder."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def route(key: str, families: tuple[FamilyConf, ...], ignore: tuple[str, ...]) -> tuple[FamilyConf | None, str, str]:
    """(family, status, detail) for one key: ignore patterns first, then the first family whose path matches."""
    for pattern in ignore:
        if glob_regex(pattern).match(key):
            return None, STATUS_IGNORED, f"matches ignore pattern {pattern}"
    for fam in families:
        if fam.source == SOURCE_RAW and glob_regex(fam.path).match(key):
            return fam, STATUS_MAPPED, ""
    return None, STATUS_UNMAPPED, "no family path pattern matches; add a family or an ignore pattern to the conf"


def inventory_rows(objs, cfg: Config) -> list[dict]:
    """Rows of the inventory table for listed objects (pure: no Spark)."""
    rows = []
    for obj in objs:
        fam, status, detail = route(obj.key, cfg.families, cfg.ignore)
        if status == STATUS_MAPPED and obj.error:
            status, detail = STATUS_UNREADABLE, obj.error
        elif status == STATUS_MAPPED and obj.size == 0:
            status, detail = STATUS_EMPTY, "object has 0 bytes"
        elif not objects.is_safe_key(obj.key):
            status, detail = STATUS_UNREADABLE, "key escapes the root"
        rows.append({
            "key": obj.key, "uri": obj.uri, "size": int(obj.size), "etag": obj.etag, "mtime": obj.mtime,
            "family": fam.name if fam else None, "format": fam.format if fam else None,
            "status": status, "detail": detail or None,
        })
    return rows


def coverage(rows: list[dict], cfg: Config, records: dict[str, int] | None = None) -> list[dict]:
    """Coverage of every configured family: present / partial / missing (or generated), objects and records."""
    by_family: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["family"]:
            by_family[row["family"]].append(row)
    out = []
    for fam in cfg.families:
        objs = by_family.get(fam.name, [])
        good = [r for r in objs if r["status"] == STATUS_MAPPED]
        n_records = (records or {}).get(fam.name)
        if fam.source != SOURCE_RAW:
            status = COVERAGE_GENERATED if fam.source == "generated" else COVERAGE_MISSING
        elif not good:
            status = COVERAGE_MISSING
        elif len(good) < len(objs) or (n_records is not None and n_records < fam.min_records):
            status = COVERAGE_PARTIAL
        else:
            status = COVERAGE_PRESENT
        out.append({
            "family": fam.name, "source": fam.source, "status": status, "required": fam.required,
            "objects": len(objs), "readable_objects": len(good), "bytes": sum(r["size"] for r in objs),
            "records": n_records, "min_records": fam.min_records,
        })
    return out


def format_coverage(cov: list[dict]) -> str:
    head = f"{'family':<26}{'source':<11}{'status':<11}{'objects':>8}{'bytes':>12}{'records':>9}"
    lines = [head, "-" * len(head)]
    for c in cov:
        rec = "" if c["records"] is None else str(c["records"])
        lines.append(f"{c['family']:<26}{c['source']:<11}{c['status']:<11}{c['objects']:>8}{c['bytes']:>12}{rec:>9}")
    return "\n".join(lines)


def coverage_uri(cfg: Config) -> str:
    return join_uri(cfg.lake_root, "_reports", "coverage.json")


def write_coverage(cfg: Config, cov: list[dict]) -> None:
    objects.write_text(coverage_uri(cfg), json.dumps({"families": cov}, indent=2, default=str),
                       cfg.s3_endpoint_url)


def to_frame(spark: SparkSession, rows: list[dict]) -> DataFrame:
    return spark.createDataFrame(rows, INVENTORY_SCHEMA)


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """List raw_root, write `<lake_root>/inventory` and the coverage report; return counts."""
    objs = list(objects.list_objects(cfg.raw_root, cfg.s3_endpoint_url))
    rows = inventory_rows(objs, cfg)
    delta.write_table(to_frame(spark, rows), cfg, INVENTORY, run_id, "inventory")
    cov = coverage(rows, cfg)
    write_coverage(cfg, cov)
    log.info("coverage (objects):\n%s", format_coverage(cov))
    counts: dict = defaultdict(int)
    for row in rows:
        counts[f"objects_{row['status']}"] += 1
    counts["objects"] = len(rows)
    counts["families_missing"] = sum(1 for c in cov if c["status"] == COVERAGE_MISSING and c["source"] == SOURCE_RAW)
    return dict(counts)
