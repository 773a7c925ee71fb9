"""report: `<release_dir>/report/index.html` + PNGs describing the release, after verify and before upload.

Sections: records by family x split x phase (manifest), turn and length distributions, duplicate cluster sizes,
PII findings by type, preference pairs by strategy with margins, the gate table, quarantine. Lake tables are read
at the versions the manifest pinned (the report describes the release, not whatever the lake holds now); a
section whose table or file is absent says so and the rest of the page still renders.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from etl import report_render as rr
from etl.config import Config
from etl.io import delta, release
from etl.schemas import (
    CONVERSATIONS,
    DUP_CLUSTERS,
    GATE_RESULTS,
    PII_FINDINGS,
    PREFERENCE_PAIRS,
    QUARANTINE,
)

log = logging.getLogger(__name__)

REPORT_DIR = "report"
MARGIN_BINS = 20
WRITTEN_BY = {CONVERSATIONS: "ingest", DUP_CLUSTERS: "dedup", PII_FINDINGS: "ingest",
              PREFERENCE_PAIRS: "preference_pairs", GATE_RESULTS: "verify", QUARANTINE: "ingest"}


# ---- pure DataFrame -> DataFrame aggregations ----

def log2_bins(conv: DataFrame, column: str) -> DataFrame:
    """(family, bucket = floor(log2(value)), n): a histogram that spans 1 to 100k without empty bins."""
    bucket = F.floor(F.log2(F.greatest(F.col(column), F.lit(1)))).cast("int")
    return conv.groupBy("family", bucket.alias("bucket")).agg(F.count(F.lit(1)).alias("n"))


def length_quantiles(conv: DataFrame) -> DataFrame:
    """Per family: conversations, turns p50/p90/max, characters p50/p90/max."""
    return conv.groupBy("family").agg(
        F.count(F.lit(1)).alias("conversations"),
        F.percentile_approx("turn_count", 0.5).alias("turns_p50"),
        F.percentile_approx("turn_count", 0.9).alias("turns_p90"),
        F.max("turn_count").alias("turns_max"),
        F.percentile_approx("char_count", 0.5).alias("chars_p50"),
        F.percentile_approx("char_count", 0.9).alias("chars_p90"),
        F.max("char_count").alias("chars_max"),
    )


def cluster_size_histogram(clusters: DataFrame) -> DataFrame:
    """(cluster_size, clusters, rows_removed): one canonical member per cluster carries its size."""
    return (clusters.where(F.col("is_canonical")).groupBy("cluster_size")
            .agg(F.count(F.lit(1)).alias("clusters"))
            .withColumn("rows_removed", F.col("clusters") * (F.col("cluster_size") - 1)))


def cluster_reasons(clusters: DataFrame) -> DataFrame:
    """(reason, members, removed): how the duplicate clusters were formed."""
    return clusters.groupBy("reason").agg(F.count(F.lit(1)).alias("members"),
                                          F.count_if(~F.col("is_canonical")).alias("removed"))


def pii_by_type(pii: DataFrame) -> DataFrame:
    """(pii_type, findings, conversations) over all families."""
    return pii.groupBy("pii_type").agg(F.sum("findings").alias("findings"),
                                       F.sum("conversations").alias("conversations"))


def pair_summary(pairs: DataFrame) -> DataFrame:
    """Per strategy: pairs, pairs per split, margin min/p50/mean/max, mean chosen and rejected characters."""
    chosen_len = F.length(F.try_element_at("chosen", F.lit(1))["content"])
    rejected_len = F.length(F.try_element_at("rejected", F.lit(1))["content"])
    return pairs.groupBy("strategy").agg(
        F.count(F.lit(1)).alias("pairs"),
        *[F.count_if(F.col("split") == s).alias(s) for s in rr.SPLIT_ORDER],
        F.round(F.min("margin"), 3).alias("margin_min"),
        F.round(F.percentile_approx("margin", 0.5), 3).alias("margin_p50"),
        F.round(F.avg("margin"), 3).alias("margin_mean"),
        F.round(F.max("margin"), 3).alias("margin_max"),
        F.round(F.avg(chosen_len), 0).alias("chosen_chars"),
        F.round(F.avg(rejected_len), 0).alias("rejected_chars"),
    )


def margin_bins(pairs: DataFrame, n_bins: int = MARGIN_BINS) -> DataFrame:
    """(strategy, lo, hi, n): `n_bins` equal-width margin bins per strategy (null margins left out)."""
    with_margin = pairs.where(F.col("margin").isNotNull()).select("strategy", "margin")
    ranges = with_margin.groupBy("strategy").agg(F.min("margin").alias("m_lo"), F.max("margin").alias("m_hi"))
    # One value only (e.g. every degraded pair scored alike): a narrow but visible bin of width 0.1.
    width = F.when(F.col("m_hi") > F.col("m_lo"), (F.col("m_hi") - F.col("m_lo")) / n_bins).otherwise(F.lit(0.1))
    bucket = F.least(F.floor((F.col("margin") - F.col("m_lo")) / width), F.lit(n_bins - 1)).cast("int")
    return (with_margin.join(ranges, "strategy", how="inner")
            .groupBy("strategy", "m_lo", bucket.alias("bucket"), width.alias("width"))
            .agg(F.count(F.lit(1)).alias("n"))
            .select("strategy", (F.col("m_lo") + F.col("bucket") * F.col("width")).alias("lo"),
                    (F.col("m_lo") + (F.col("bucket") + 1) * F.col("width")).alias("hi"), "n"))


# ---- reading (the thin edge) ----

def pinned_versions(manifest: dict | None) -> dict[str, int]:
    """Table -> version the manifest says export read."""
    out = {}
    for entry in (manifest or {}).get("tables", []) or []:
        if isinstance(entry, dict) and isinstance(entry.get("version"), int):
            out[str(entry.get("name"))] = entry["version"]
    return out


def read_optional(spark: SparkSession, cfg: Config, name: str, versions: dict[str, int]) -> DataFrame | None:
    """The table at its pinned version (latest when unpinned), or None when it does not exist."""
    if not delta.table_exists(spark, cfg.table_path(name)):
        return None
    return delta.read_table(spark, cfg, name, versions.get(name))


def missing_table(cfg: Config, name: str) -> str:
    return f"table {cfg.database}.{name} not found: run the {WRITTEN_BY.get(name, name)} stage"


def read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return None


def to_pandas(df: DataFrame, order: list[str]) -> pd.DataFrame:
    """Collect a small aggregate, ordered (the aggregates here have at most a few hundred rows)."""
    return df.orderBy(*order).toPandas()


# ---- sections ----

def release_section(manifest: dict | None, out_dir: str) -> rr.Section:
    sec = rr.Section("release", "Records by family × split × phase")
    if manifest is None:
        sec.missing = "manifest.json not found in release_dir: run the export stage"
        return sec
    counts = manifest.get("counts") or {}
    wide = rr.family_split_phase_frame(counts.get("by_family_split_phase") or {})
    sec.parts.append(rr.table_html(wide, "counts"))
    if not wide.empty:
        sec.parts.append(rr.plot_family_split(wide, out_dir))
    excluded = counts.get("excluded") or {}
    rows = [{"family": fam, "reason": reason, "records": n} for fam, reasons in excluded.items()
            for reason, n in (reasons or {}).items()]
    if rows:
        sec.parts.append("<h3>Left out of the release</h3>" + rr.table_html(pd.DataFrame(rows)))
    return sec


def lengths_section(conv: DataFrame | None, cfg: Config, out_dir: str) -> rr.Section:
    sec = rr.Section("lengths", "Turn and length distributions")
    if conv is None:
        sec.missing = missing_table(cfg, CONVERSATIONS)
        return sec
    sec.parts.append(rr.table_html(to_pandas(length_quantiles(conv), ["family"])))
    turns = to_pandas(log2_bins(conv, "turn_count"), ["family", "bucket"])
    chars = to_pandas(log2_bins(conv, "char_count"), ["family", "bucket"])
    if not turns.empty:
        sec.parts.append(rr.plot_log2_bins(turns, "messages per conversation", out_dir, "turns.png"))
        sec.parts.append(rr.plot_log2_bins(chars, "characters per conversation", out_dir, "chars.png"))
    return sec


def duplicates_section(clusters: DataFrame | None, cfg: Config, out_dir: str) -> rr.Section:
    sec = rr.Section("duplicates", "Duplicate clusters")
    if clusters is None:
        sec.missing = missing_table(cfg, DUP_CLUSTERS)
        return sec
    hist = to_pandas(cluster_size_histogram(clusters), ["cluster_size"])
    sec.parts.append(rr.table_html(hist))
    multi = hist[hist["cluster_size"] > 1]
    if not multi.empty:
        sec.parts.append(rr.plot_bars(list(multi["cluster_size"]), list(multi["clusters"]), "cluster size",
                                      "clusters", out_dir, "cluster_sizes.png", log_y=True))
    sec.parts.append("<h3>By reason</h3>" + rr.table_html(to_pandas(cluster_reasons(clusters), ["reason"])))
    return sec


def pii_section(pii: DataFrame | None, cfg: Config, out_dir: str) -> rr.Section:
    sec = rr.Section("pii", "PII findings (redacted) by type")
    if pii is None:
        sec.missing = missing_table(cfg, PII_FINDINGS)
        return sec
    by_type = to_pandas(pii_by_type(pii), ["pii_type"])
    sec.parts.append(rr.table_html(by_type))
    if not by_type.empty:
        sec.parts.append(rr.plot_bars(list(by_type["pii_type"]), list(by_type["findings"]), "PII type",
                                      "findings", out_dir, "pii.png"))
        sec.parts.append("<h3>By family</h3>" + rr.table_html(to_pandas(pii, ["family", "pii_type"])))
    return sec


def pairs_section(pairs: DataFrame | None, cfg: Config, out_dir: str) -> rr.Section:
    sec = rr.Section("pairs", "Preference pairs by strategy")
    if pairs is None:
        sec.missing = missing_table(cfg, PREFERENCE_PAIRS)
        return sec
    sec.parts.append(rr.table_html(to_pandas(pair_summary(pairs), ["strategy"])))
    bins = to_pandas(margin_bins(pairs), ["strategy", "lo"])
    if not bins.empty:
        sec.parts.append(rr.plot_margins(bins, out_dir))
    return sec


def gate_rows(spark: SparkSession, cfg: Config, release_dir: str, release_id: str | None) -> tuple[list, str] | None:
    """Gate rows of this release: gate_report.json, else the latest run in gate_results; None when neither."""
    report = read_json(os.path.join(release_dir, release.GATE_REPORT_FILE))
    if report and report.get("gates") is not None:
        return report["gates"], f"{release.GATE_REPORT_FILE} (run {report.get('run_id')})"
    if not delta.table_exists(spark, cfg.table_path(GATE_RESULTS)):
        return None
    results = delta.read_table(spark, cfg, GATE_RESULTS)
    if release_id:
        results = results.where(F.col("release_id") == release_id)
    latest = results.agg(F.max("run_id")).first()[0]
    if latest is None:
        return None
    rows = [r.asDict() for r in results.where(F.col("run_id") == latest).collect()]
    return rows, f"{cfg.database}.{GATE_RESULTS} (run {latest})"


def gates_section(spark: SparkSession, cfg: Config, release_id: str | None) -> tuple[rr.Section, pd.DataFrame]:
    sec = rr.Section("gates", "Release gates")
    found = gate_rows(spark, cfg, cfg.release_dir, release_id)
    if found is None:
        sec.missing = f"no {release.GATE_REPORT_FILE} and no gate_results rows: run the verify stage"
        return sec, rr.gate_frame([])
    rows, source = found
    frame = rr.gate_frame(rows)
    sec.parts.append(f"<p>source: {rr.esc(source)}</p>" + rr.gate_table_html(frame))
    return sec, frame


def quarantine_section(quarantine: DataFrame | None, cfg: Config) -> rr.Section:
    sec = rr.Section("quarantine", "Quarantined records")
    if quarantine is None:
        sec.missing = missing_table(cfg, QUARANTINE)
        return sec
    by_reason = quarantine.groupBy("family", "reason").agg(F.count(F.lit(1)).alias("records"))
    sec.parts.append(rr.table_html(to_pandas(by_reason, ["family", "reason"])))
    return sec


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Render the release report; returns the page path and which sections had no data."""
    out_dir = os.path.join(cfg.release_dir, REPORT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    manifest = read_json(release.manifest_path(cfg.release_dir))
    versions = pinned_versions(manifest)
    tables = {name: read_optional(spark, cfg, name, versions)
              for name in (CONVERSATIONS, DUP_CLUSTERS, PII_FINDINGS, PREFERENCE_PAIRS, QUARANTINE)}
    release_id = (manifest or {}).get("release_id")
    gates, gate_frame = gates_section(spark, cfg, release_id)
    sections = [release_section(manifest, out_dir), gates,
                lengths_section(tables[CONVERSATIONS], cfg, out_dir),
                duplicates_section(tables[DUP_CLUSTERS], cfg, out_dir),
                pii_section(tables[PII_FINDINGS], cfg, out_dir),
                pairs_section(tables[PREFERENCE_PAIRS], cfg, out_dir),
                quarantine_section(tables[QUARANTINE], cfg)]
    kpis = {"records released": ((manifest or {}).get("counts") or {}).get("records", "-"),
            "shards": len((manifest or {}).get("shards") or []) if manifest else "-",
            "gates passed": f"{(gate_frame['result'] == 'PASS').sum()}/{len(gate_frame)}" if len(gate_frame) else "-"}
    header = {"release_id": release_id or "(no manifest)", "created_at": (manifest or {}).get("created_at", ""),
              "code_version": (manifest or {}).get("code_version", ""), "config_hash": cfg.config_hash(),
              "report run": run_id, "rendered_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
              "tables (version read)": ", ".join(f"{k}@{v}" for k, v in sorted(versions.items())) or "latest"}
    page = rr.render_page(f"Release report {release_id or ''}".strip(), header, kpis, sections)
    path = rr.write_page(out_dir, page)
    missing = [s.anchor for s in sections if s.missing]
    log.info("report: %s (%d sections, without data: %s)", path, len(sections), ", ".join(missing) or "none")
    return {"report": path, "sections": len(sections), "sections_missing": len(missing), "missing": missing}
