"""Analyst SQL: column comments, views for common questions, example queries and the `python -m etl sql` command.

Tables are registered by `etl.io.delta.register_all` (CREATE TABLE ... USING DELTA LOCATION); their column
comments are the StructField metadata of etl/schemas.py, which Delta stores when `write_table` creates a table.
Views are (re)created at the end of `register_all`, each only when every table it reads exists, so a lake that
has only run the first stages still opens.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from etl.config import Config
from etl.schemas import (
    CONVERSATIONS,
    CURRICULUM,
    DUP_CLUSTERS,
    DUP_EDGES,
    PREFERENCE_PAIRS,
    SCHEMAS,
    SPLITS,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class View:
    name: str
    tables: tuple[str, ...]  # every table the view reads; the view is created only when all exist
    comment: str
    sql: str  # `{db}` stands for the catalog database


FIRST_TURN = "try_element_at(filter({m}.messages, x -> x.role = '{role}'), 1).content"

VIEWS = (
    View("v_split_summary", (SPLITS,), "conversations per family and split, with the share of the family",
         """SELECT family, split, count(*) AS conversations, count(DISTINCT split_group) AS split_groups,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY family), 2) AS pct_of_family
FROM {db}.splits
GROUP BY family, split"""),
    View("v_duplicate_examples", (DUP_CLUSTERS, CONVERSATIONS, DUP_EDGES),
         "every removed duplicate beside the canonical member that is kept, with the edge evidence",
         """WITH edges AS (
  SELECT conversation_id_a, conversation_id_b, max(jaccard) AS jaccard, max(cosine) AS cosine,
         concat_ws(',', sort_array(collect_set(source))) AS edge_sources
  FROM {db}.dup_edges WHERE kind = 'duplicate' GROUP BY conversation_id_a, conversation_id_b)
SELECT d.cluster_id, d.cluster_size, d.reason,
       k.conversation_id AS canonical_id, d.conversation_id AS duplicate_id,
       k.family AS canonical_family, m.family AS duplicate_family,
       """ + FIRST_TURN.format(m="k", role="user") + """ AS canonical_prompt,
       """ + FIRST_TURN.format(m="m", role="user") + """ AS duplicate_prompt,
       """ + FIRST_TURN.format(m="k", role="assistant") + """ AS canonical_answer,
       """ + FIRST_TURN.format(m="m", role="assistant") + """ AS duplicate_answer,
       e.jaccard, e.cosine, e.edge_sources
FROM {db}.dup_clusters d
JOIN {db}.conversations m ON m.conversation_id = d.conversation_id
JOIN {db}.conversations k ON k.conversation_id = d.cluster_id
LEFT JOIN edges e ON e.conversation_id_a = least(d.conversation_id, d.cluster_id)
                 AND e.conversation_id_b = greatest(d.conversation_id, d.cluster_id)
WHERE NOT d.is_canonical"""),
    View("v_family_coverage", (CONVERSATIONS, DUP_CLUSTERS, SPLITS, CURRICULUM, PREFERENCE_PAIRS),
         "per family: conversations, duplicates removed, rows per split, preference pairs, curriculum routing",
         """WITH c AS (
  SELECT family, count(*) AS conversations, round(avg(turn_count), 1) AS avg_turns,
         round(avg(char_count), 0) AS avg_chars, count(parent_id) AS derived_rows
  FROM {db}.conversations GROUP BY family),
d AS (
  SELECT c.family, count_if(NOT k.is_canonical) AS duplicates_removed
  FROM {db}.conversations c JOIN {db}.dup_clusters k ON k.conversation_id = c.conversation_id GROUP BY c.family),
s AS (
  SELECT family, count_if(split = 'train') AS train, count_if(split = 'val') AS val,
         count_if(split = 'test') AS test, count_if(split = 'holdout') AS holdout
  FROM {db}.splits GROUP BY family),
p AS (
  SELECT CASE strategy WHEN 'ranked' THEN 'preference_ranked' WHEN 'native' THEN 'preference_native'
                       ELSE 'preference_synthetic' END AS family, count(*) AS preference_pairs
  FROM {db}.preference_pairs GROUP BY 1),
r AS (
  SELECT family, concat_ws(', ', sort_array(collect_set(concat(phase, ':', stage)))) AS curriculum
  FROM {db}.curriculum GROUP BY family),
f AS (
  SELECT family FROM c UNION SELECT family FROM p UNION SELECT family FROM r)
SELECT f.family, coalesce(c.conversations, 0) AS conversations, coalesce(d.duplicates_removed, 0) AS duplicates_removed,
       coalesce(s.train, 0) AS train, coalesce(s.val, 0) AS val, coalesce(s.test, 0) AS test,
       coalesce(s.holdout, 0) AS holdout, coalesce(p.preference_pairs, 0) AS preference_pairs,
       c.avg_turns, c.avg_chars, coalesce(c.derived_rows, 0) AS derived_rows, r.curriculum
FROM f
LEFT JOIN c ON c.family = f.family
LEFT JOIN d ON d.family = f.family
LEFT JOIN s ON s.family = f.family
LEFT JOIN p ON p.family = f.family
LEFT JOIN r ON r.family = f.family"""),
    View("v_preference_summary", (PREFERENCE_PAIRS,),
         "preference pairs per strategy, prompt family and split: counts, margins, chosen/rejected lengths",
         """SELECT strategy, family, split, count(*) AS pairs,
       round(avg(margin), 3) AS avg_margin, round(min(margin), 3) AS min_margin, round(max(margin), 3) AS max_margin,
       round(avg(length(try_element_at(chosen, 1).content)), 0) AS avg_chosen_chars,
       round(avg(length(try_element_at(rejected, 1).content)), 0) AS avg_rejected_chars,
       round(avg(length(try_element_at(chosen, 1).content))
             / nullif(avg(length(try_element_at(rejected, 1).content)), 0), 2) AS length_ratio
FROM {db}.preference_pairs
GROUP BY strategy, family, split"""),
)

# README-ready queries (the README pastes these; tests/test_catalog.py runs every one on a small lake).
EXAMPLE_QUERIES = (
    ("Tables and views", "SHOW TABLES IN lake"),
    ("Columns with their comments", "DESCRIBE TABLE lake.conversations"),
    ("Conversations per family",
     ("SELECT family, count(*) AS conversations, round(avg(turn_count), 1) AS avg_turns "
      "FROM lake.conversations GROUP BY family ORDER BY conversations DESC")),
    ("Split sizes", "SELECT * FROM lake.v_split_summary ORDER BY family, split"),
    ("Family coverage", "SELECT * FROM lake.v_family_coverage ORDER BY family"),
    ("Near duplicates side by side, least similar first",
     ("SELECT cluster_size, jaccard, cosine, canonical_prompt, duplicate_prompt FROM lake.v_duplicate_examples "
      "WHERE reason = 'near' ORDER BY jaccard NULLS LAST, duplicate_id LIMIT 5")),
    ("Preference pairs", "SELECT * FROM lake.v_preference_summary ORDER BY strategy, family, split"),
    ("Quarantined records by reason",
     ("SELECT family, reason, count(*) AS records FROM lake.quarantine "
      "GROUP BY family, reason ORDER BY records DESC")),
    ("PII redacted, by type",
     ("SELECT pii_type, sum(findings) AS findings, sum(conversations) AS conversations "
      "FROM lake.pii_findings GROUP BY pii_type ORDER BY findings DESC")),
    ("History of a table (one row per write, with the run id in userMetadata)", "DESCRIBE HISTORY lake.splits"),
    ("Time travel: the first version of a table",
     ("SELECT family, count(*) AS conversations FROM lake.conversations VERSION AS OF 0 "
      "GROUP BY family ORDER BY family")),
    ("What changed since version 0",
     ("SELECT family, count(*) AS rows_added FROM (SELECT conversation_id, family FROM lake.conversations "
      "EXCEPT SELECT conversation_id, family FROM lake.conversations VERSION AS OF 0) "
      "GROUP BY family ORDER BY family")),
)


def registered_tables(spark: SparkSession, database: str) -> set[str]:
    """Names of the tables (not views) registered in `database`."""
    if not spark.catalog.databaseExists(database):
        return set()
    return {t.name for t in spark.catalog.listTables(database) if t.tableType != "VIEW" and not t.isTemporary}


def view_sql(view: View, database: str) -> str:
    comment = view.comment.replace("'", "\\'")
    return f"CREATE OR REPLACE VIEW `{database}`.`{view.name}` COMMENT '{comment}' AS\n" + view.sql.format(
        db=f"`{database}`")


def create_views(spark: SparkSession, cfg: Config, tables: list[str] | None = None) -> list[str]:
    """Create every view whose tables are registered; never fails (a session must open on a partial lake)."""
    have = set(tables) if tables is not None else registered_tables(spark, cfg.database)
    done = []
    for view in VIEWS:
        if not set(view.tables) <= have:
            log.debug("view %s.%s skipped: needs %s", cfg.database, view.name, ", ".join(sorted(set(view.tables) - have)))
            continue
        try:
            spark.sql(view_sql(view, cfg.database))
            done.append(view.name)
        except Exception as exc:  # noqa: BLE001 - a broken view must not stop the session or the pipeline
            log.warning("view %s.%s not created: %s", cfg.database, view.name, str(exc).splitlines()[0][:300])
    return done


def column_comments(spark: SparkSession, database: str, table: str) -> dict[str, str | None]:
    """column -> comment as the catalog shows it (`DESCRIBE TABLE`)."""
    rows = spark.sql(f"DESCRIBE TABLE `{database}`.`{table}`").collect()
    out = {}
    for r in rows:
        if not r["col_name"] or r["col_name"].startswith("#"):
            break  # partition / detail sections follow the columns
        out[r["col_name"]] = r["comment"] or None
    return out


def missing_comments(spark: SparkSession, cfg: Config) -> dict[str, list[str]]:
    """Registered tables whose stored schema lacks some schema comment (written before comments were kept)."""
    out = {}
    for table in sorted(registered_tables(spark, cfg.database) & set(SCHEMAS)):
        shown = column_comments(spark, cfg.database, table)
        missing = [f.name for f in SCHEMAS[table].fields if f.metadata.get("comment") and not shown.get(f.name)]
        if missing:
            out[table] = missing
    return out


def add_missing_comments(spark: SparkSession, cfg: Config) -> dict[str, list[str]]:
    """ALTER TABLE ... ALTER COLUMN ... COMMENT for missing comments (one new Delta version per column changed).

    Only for lakes written before write_table kept comments; never called on session start, because it writes.
    """
    todo = missing_comments(spark, cfg)
    for table, columns in todo.items():
        fields = {f.name: f for f in SCHEMAS[table].fields}
        for col in columns:
            comment = fields[col].metadata["comment"].replace("'", "\\'")
            spark.sql(f"ALTER TABLE `{cfg.database}`.`{table}` ALTER COLUMN `{col}` COMMENT '{comment}'")
    return todo


def split_statements(text: str) -> list[str]:
    """SQL text -> statements, split on `;` outside quotes."""
    parts = re.split(r";(?=(?:[^'\"]|'[^']*'|\"[^\"]*\")*$)", text)
    return [p.strip() for p in parts if p.strip()]


def show(df: DataFrame, limit: int = 100, width: int = 60) -> None:
    """Print a result the way spark-sql does, cells cut at `width` characters."""
    df.show(n=limit, truncate=width)


def sql_command(conf: str | None, overrides: list[str], statements: list[str]) -> int:
    """`python -m etl sql --conf FILE -e "SELECT ..."`: run statements against the lake catalog, print results."""
    from etl.lake import open_lake

    if not statements:
        statements = [sys.stdin.read()]
    todo = [s for text in statements for s in split_statements(text)]
    if not todo:
        raise ValueError("sql: no statement given; pass -e \"SELECT ...\" or pipe SQL on stdin")
    spark, _ = open_lake(conf, overrides)
    for statement in todo:
        print(f"-- {statement}", flush=True)
        show(spark.sql(statement))
    return 0
