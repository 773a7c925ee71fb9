"""sessions: long sessions of raw families -> family `long_running_therapy`, windowed to the training context.

A raw conversation with at least `long_sessions.min_turns` turns becomes one or more `long_running_therapy` rows
with `parent_id` = its conversation_id. A session whose `char_count` fits `long_sessions.max_chars` is one window
holding the whole session. A longer one is cut into overlapping windows that each start at a user turn, end at an
assistant turn, and share at most `long_sessions.overlap_turns` turns with the window before; a system prompt is
repeated at the head of every window. A single user+assistant exchange longer than the budget still makes a
(complete, oversize) window: windows never cut inside a turn. Turns before the first user turn and after the
last assistant turn of a windowed session cannot start or end a window and are counted as `uncovered_turns`.
Window metadata: parent metadata (pair fields dropped, per-assistant lists sliced) plus parent_family,
window_index, window_total, turn_start / turn_end (half-open indices into the parent's messages), parent_turns,
parent_source_uri, parent_source_locator and generator=sessions.

Windows reuse the parent's (already PII-redacted) text, so `pii_redacted` is inherited, not recomputed.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DoubleType, IntegerType, StringType, StructField, StructType

from etl import contract
from etl.config import Config
from etl.io import delta
from etl.schemas import CONVERSATIONS, MESSAGES, ROLE_ASSISTANT, ROLE_SYSTEM, ROLE_USER

log = logging.getLogger(__name__)

FAMILY = "long_running_therapy"
STAGE = "sessions"
PER_ASSISTANT_KEYS = ("strategies",)  # metadata lists with one entry per assistant message: sliced per window
# preference-pair fields describe the whole transcript, not a window of it
PAIR_KEYS = ("rejected_messages", "chosen_messages_tail", "prompt_turns", "pair_shares_prefix")

WINDOWS_SCHEMA = StructType([
    StructField("conversation_id", StringType(), False),
    StructField("family", StringType(), False),
    StructField("source_uri", StringType(), False),
    StructField("source_etag", StringType(), True),
    StructField("source_locator", StringType(), False),
    StructField("messages_json", StringType(), False),
    StructField("content_hash", StringType(), False),
    StructField("metadata_json", StringType(), False),
    StructField("topic", StringType(), True),
    StructField("turn_count", IntegerType(), False),
    StructField("char_count", IntegerType(), False),
    StructField("quality_score", DoubleType(), True),
    StructField("pii_redacted", BooleanType(), False),
    StructField("parent_id", StringType(), False),
    StructField("oversize", BooleanType(), False),
    StructField("uncovered_turns", IntegerType(), False),
])


def _widest_end(starts_end: int, start: int, assistants: list[int], prefix: list[int], budget: int) -> int:
    """Extend a window [start, starts_end) assistant turn by assistant turn while it fits the budget."""
    end = starts_end
    k = bisect.bisect_left(assistants, end)
    while k < len(assistants) and prefix[assistants[k] + 1] - prefix[start] <= budget:
        end = assistants[k] + 1
        k += 1
    return end


def plan_windows(roles: list[str], lengths: list[int], max_chars: int, overlap_turns: int) -> list[tuple[int, int]]:
    """Half-open turn ranges [start, end) of one session's windows (no system turn; see module docstring)."""
    n = len(roles)
    body = 1 if n and roles[0] == ROLE_SYSTEM else 0
    budget = max_chars - (lengths[0] if body else 0)
    prefix = [0]
    for length in lengths:
        prefix.append(prefix[-1] + length)
    users = [i for i in range(body, n) if roles[i] == ROLE_USER]
    assistants = [i for i in range(body, n) if roles[i] == ROLE_ASSISTANT]

    def next_end(i: int) -> int | None:  # end of the first assistant turn at index >= i
        k = bisect.bisect_left(assistants, i)
        return assistants[k] + 1 if k < len(assistants) else None

    if not users or next_end(users[0]) is None:
        return []
    start = users[0]
    min_end = next_end(start)
    windows: list[tuple[int, int]] = []
    while True:
        end = _widest_end(min_end, start, assistants, prefix, budget)
        windows.append((start, end))
        min_end = next_end(end)
        if min_end is None:
            return windows
        lo = max(end - overlap_turns, start + 1)
        candidates = users[bisect.bisect_left(users, lo):bisect.bisect_right(users, end)]
        if not candidates:  # unmerged input (two assistant turns in a row): the next user turn
            k = bisect.bisect_left(users, end)
            candidates = users[k:k + 1]
        options = [(c, next_end(max(end, c))) for c in candidates]
        options = [(c, e) for c, e in options if e is not None]
        if not options:
            return windows
        fitting = [(c, e) for c, e in options if prefix[e] - prefix[c] <= budget]
        start, min_end = fitting[0] if fitting else options[-1]  # most overlap that fits, else the least


def _window_metadata(parent_meta: dict, messages: list[dict], start: int, end: int, parent_family: str) -> dict:
    """Parent metadata with per-assistant lists sliced to the window, pair fields dropped, provenance added."""
    meta = {k: v for k, v in parent_meta.items() if k not in PAIR_KEYS}
    n_before = sum(1 for m in messages[:start] if m["role"] == ROLE_ASSISTANT)
    n_in = sum(1 for m in messages[start:end] if m["role"] == ROLE_ASSISTANT)
    n_all = sum(1 for m in messages if m["role"] == ROLE_ASSISTANT)
    for key in PER_ASSISTANT_KEYS:
        if key not in meta:
            continue
        try:
            values = json.loads(meta[key])
        except (TypeError, ValueError):
            values = None
        if isinstance(values, list) and len(values) == n_all:
            meta[key] = json.dumps(values[n_before:n_before + n_in], ensure_ascii=False, sort_keys=True)
        else:
            del meta[key]  # cannot be aligned with the window's turns
    meta["parent_family"] = parent_family
    return meta


def session_windows(row: dict, max_chars: int, overlap_turns: int) -> list[dict]:
    """All `long_running_therapy` rows (as WINDOWS_SCHEMA dicts, plain Python values) of one parent session."""
    messages = row["messages"]
    parent_id = row["conversation_id"]
    total_chars = sum(len(m["content"]) for m in messages)
    if total_chars <= max_chars:
        ranges, whole = [(0, len(messages))], True
    else:
        ranges = plan_windows([m["role"] for m in messages], [len(m["content"]) for m in messages],
                              max_chars, overlap_turns)
        whole = False
    system = [messages[0]] if messages and messages[0]["role"] == ROLE_SYSTEM and not whole else []
    covered = set()
    for s, e in ranges:
        covered.update(range(s, e))
    uncovered = len(messages) - len(system) - len(covered)
    source_uri = f"derived:{parent_id}"
    out = []
    for i, (s, e) in enumerate(ranges):
        window = system + messages[s:e]
        meta = _window_metadata(row["metadata"], messages, s, e, row["family"])
        meta.update({"window_index": str(i), "window_total": str(len(ranges)), "turn_start": str(s),
                     "turn_end": str(e), "parent_turns": str(len(messages)), "generator": STAGE,
                     "parent_source_uri": row["source_uri"], "parent_source_locator": row["source_locator"]})
        chars = sum(len(m["content"]) for m in window)
        out.append({
            "conversation_id": contract.conversation_id(FAMILY, source_uri, f"window:{i}"),
            "family": FAMILY, "source_uri": source_uri, "source_etag": row["source_etag"],
            "source_locator": f"window:{i}",
            "messages_json": json.dumps(window, ensure_ascii=False),
            "content_hash": contract.content_hash(window),
            "metadata_json": json.dumps(meta, ensure_ascii=False, sort_keys=True),
            "topic": row["topic"], "turn_count": len(window), "char_count": chars,
            "quality_score": row["quality_score"], "pii_redacted": bool(row["pii_redacted"]),
            "parent_id": parent_id, "oversize": chars > max_chars,
            "uncovered_turns": uncovered if i == 0 else 0,
        })
    return out


def windows_frame(pdf: pd.DataFrame, max_chars: int, overlap_turns: int) -> pd.DataFrame:
    """pandas: parent sessions (messages_json, metadata_json, ...) -> their window rows (WINDOWS_SCHEMA)."""
    rows: list[dict] = []
    for rec in pdf.to_dict("records"):
        rec["messages"] = json.loads(rec.pop("messages_json"))
        rec["metadata"] = json.loads(rec.pop("metadata_json") or "{}")
        qs = rec.get("quality_score")
        rec["quality_score"] = None if qs is None or pd.isna(qs) else float(qs)
        rows.extend(session_windows(rec, max_chars, overlap_turns))
    return pd.DataFrame(rows, columns=[f.name for f in WINDOWS_SCHEMA.fields])


def long_sessions(conv: DataFrame, raw_families: list[str], min_turns: int) -> DataFrame:
    """Raw-family conversations with at least `min_turns` turns (never generated rows, never windows)."""
    return conv.where(F.col("family").isin(raw_families) & (F.col("turn_count") >= min_turns))


def windowed(sessions: DataFrame, max_chars: int, overlap_turns: int) -> DataFrame:
    """Long sessions -> WINDOWS_SCHEMA rows via mapInPandas around `windows_frame`."""
    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield windows_frame(pdf, max_chars, overlap_turns)

    cols = ["conversation_id", "family", "source_uri", "source_etag", "source_locator", "topic",
            "quality_score", "pii_redacted"]
    return (sessions.select(*cols, F.to_json("messages").alias("messages_json"),
                            F.to_json("metadata").alias("metadata_json"))
            .mapInPandas(fn, WINDOWS_SCHEMA))


def to_conversations(windows: DataFrame, run_id: str) -> DataFrame:
    """WINDOWS_SCHEMA rows -> the conversations contract."""
    return windows.select(
        "conversation_id", "family", "source_uri", "source_etag", "source_locator",
        F.lit(run_id).alias("ingest_run_id"),
        F.from_json("messages_json", MESSAGES).alias("messages"),
        "content_hash",
        F.from_json("metadata_json", "map<string,string>").alias("metadata"),
        "topic", "turn_count", "char_count", "quality_score", "pii_redacted", "parent_id")


def _stats(sessions: DataFrame, windows: DataFrame) -> dict:
    s = sessions.agg(F.count(F.lit(1)).alias("n"), F.min("turn_count").alias("min"),
                     F.median("turn_count").alias("median"), F.max("turn_count").alias("max")).first()
    w = windows.agg(F.count(F.lit(1)).alias("windows"), F.countDistinct("parent_id").alias("parents"),
                    F.sum(F.col("oversize").cast("int")).alias("oversize"),
                    F.sum("uncovered_turns").alias("uncovered")).first()
    multi = windows.groupBy("parent_id").count().where(F.col("count") > 1).count()
    by_family = {r["family"]: r["count"] for r in sessions.groupBy("family").count().collect()}
    return {
        "sessions": int(s["n"]), "windows": int(w["windows"]), "sessions_windowed": int(multi),
        "sessions_without_window": int(s["n"]) - int(w["parents"]),
        "oversize_windows": int(w["oversize"] or 0), "uncovered_turns": int(w["uncovered"] or 0),
        "turns": {"min": s["min"], "median": None if s["median"] is None else float(s["median"]), "max": s["max"]},
        "sessions_by_family": by_family,
    }


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Extract long sessions of raw families into `long_running_therapy` windows (replacing that family only)."""
    conf = cfg.long_sessions
    if conf.min_turns < 2 or conf.max_chars < 1 or conf.overlap_turns < 0:
        raise ValueError("long_sessions: need min_turns >= 2, max_chars >= 1 and overlap_turns >= 0")
    if not delta.table_exists(spark, cfg.table_path(CONVERSATIONS)):
        raise RuntimeError(f"sessions: no conversations table at {cfg.table_path(CONVERSATIONS)}; run ingest first")
    if FAMILY not in {f.name for f in cfg.families}:
        log.warning("sessions: family %s is not declared in the conf; its rows get no curriculum routing", FAMILY)
    raw = [f.name for f in cfg.raw_families()]
    unknown = sorted(set(conf.families) - set(raw))
    if unknown:
        raise ValueError(f"long_sessions.families: {unknown} are not raw families of the conf; "
                         f"use some of {raw} or leave the list empty for all")
    raw = [f for f in raw if f in conf.families] if conf.families else raw
    conv = delta.read_table(spark, cfg, CONVERSATIONS)
    sessions = long_sessions(conv, raw, conf.min_turns).persist()
    windows = windowed(sessions, conf.max_chars, conf.overlap_turns).persist()
    try:
        result = delta.write_table(to_conversations(windows, run_id), cfg, CONVERSATIONS, run_id, STAGE,
                                   replace_where=f"family IN ('{FAMILY}')")
        stats = _stats(sessions, windows)
    finally:
        windows.unpersist()
        sessions.unpersist()
    if stats["sessions_without_window"]:
        log.warning("sessions: %d long sessions have no user turn followed by an assistant turn; not extracted "
                    "(their parent rows stay as they are)", stats["sessions_without_window"])
    log.info("sessions: %d sessions >= %d turns -> %d windows (turns min/median/max %s)", stats["sessions"],
             conf.min_turns, stats["windows"], stats["turns"])
    return {**stats, "changed": result.changed}
